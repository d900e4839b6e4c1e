"""The paper's CIFAR10 run: spiking DS-ResNet-20 (widths 64/128/256), MLF K = 3, T = 4.

The paper's settings: SGD momentum 0.9, lr 0.1 x0.1 every 40 epochs, weight decay 1e-4,
110 epochs, batch 64, random crop (pad 4) + flip. Reported: 94.25 %.
The model is the library's preset ``mlf_jax.models.cifar10_resnet20()`` (tested).
"""

import ml_collections

from experiments.configs import base


def get_config() -> ml_collections.ConfigDict:
    config = base.get_config()
    config.dataset = "cifar10"
    config.data_dir = (
        ""  # a TFDS data_dir, the cifar-10-python.tar.gz archive's folder, or its extraction
    )
    config.model.depth = 20
    config.model.widths = (64, 128, 256)
    config.model.time_steps = 4
    config.batch_size = 64
    config.num_epochs = 110
    config.weight_decay = 1e-4
    return config
