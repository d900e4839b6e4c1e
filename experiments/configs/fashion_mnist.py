"""Spiking DS-ResNet-8 with MLF (K = 3) on Fashion-MNIST: the README's main job.

Sized to reach >= 85 % test accuracy within 10 minutes on a 2-core CPU: depth 8,
widths 16/32/64, T = 2, two epochs with a cosine learning-rate decay.
"""

import ml_collections

from experiments.configs import base


def get_config() -> ml_collections.ConfigDict:
    config = base.get_config()
    config.dataset = "fashion_mnist"
    config.data_dir = "/usr/share/datasets/fashion-mnist"

    config.model.depth = 8
    config.model.widths = (16, 32, 64)
    config.model.time_steps = 2

    config.batch_size = 128
    config.eval_batch_size = 500
    config.num_epochs = 2
    config.learning_rate = 0.1
    config.schedule = "cosine"
    config.warmup_epochs = 0.1
    return config
