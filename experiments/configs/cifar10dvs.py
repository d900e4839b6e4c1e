"""The paper's CIFAR10-DVS run: DS-ResNet-14 (widths 32/64/128), T = 10 frames of 10 ms.

The paper's settings: 100 epochs, batch 32, weight decay 1e-3. Reported: 70.36 %.
The model is the library's preset ``mlf_jax.models.cifar10dvs_resnet14()`` (tested).
"""

import ml_collections

from experiments.configs import base


def get_config() -> ml_collections.ConfigDict:
    config = base.get_config()
    config.dataset = "cifar10_dvs"
    config.data_dir = ""  # the folder holding tonic's CIFAR10DVS/ layout (aedat4 per class)
    config.model.depth = 14
    config.model.widths = (32, 64, 128)
    config.model.time_steps = 10  # frames over the first 100 ms (10 x 10 ms)
    config.batch_size = 32
    config.eval_batch_size = 100
    config.num_epochs = 100
    config.weight_decay = 1e-3
    return config
