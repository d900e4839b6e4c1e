"""The fit-study recipe with learned thresholds: the study's two cheap gains combined.

``fashion_mnist_converged_vth1`` (DS-ResNet-8, widths 32/64/128, T = 1, 40 epochs of batch
256, cosine decay from 0.2 after a one-epoch warm-up, tdBN scaled to 1.0, crop and flip,
weight decay 1e-4) with each MLF layer learning its thresholds (``thresholds_raw``, kept
positive and increasing by their parameterisation). The fit study found learned thresholds
worth as much as the tdBN scaling on its short runs; this run measures them together at the
same compute. Train it with ``make converged CONVERGED=fashion_mnist_converged_learned``
(resumable, also from the state carried in
``experiments/weights/fashion_mnist_converged_learned_run/``).
"""

import ml_collections

from experiments.configs import fashion_mnist_converged_vth1


def get_config() -> ml_collections.ConfigDict:
    config = fashion_mnist_converged_vth1.get_config()
    config.model.learn_thresholds = True
    return config
