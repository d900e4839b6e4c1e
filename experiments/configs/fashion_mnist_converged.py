"""Spiking DS-ResNet-8 with MLF (K = 3) on Fashion-MNIST, trained to convergence.

The recipe behind the weights in ``experiments/weights/``: twice the main job's widths
(32/64/128), T = 2, 30 epochs of batch 128 with a cosine learning-rate decay after a
one-epoch warm-up, weight decay 5e-4, and random crop (padding 2), horizontal flip and
random erasing of the training images. Checkpoints every 200 steps, so that a stopped run
loses little when resumed with the same command.
"""

import ml_collections

from experiments.configs import fashion_mnist


def get_config() -> ml_collections.ConfigDict:
    config = fashion_mnist.get_config()
    config.augment = "crop_flip_erase"

    config.model.depth = 8
    config.model.widths = (32, 64, 128)
    config.model.time_steps = 2

    config.batch_size = 128
    config.num_epochs = 30
    config.learning_rate = 0.1
    config.schedule = "cosine"
    config.warmup_epochs = 1.0
    config.weight_decay = 5e-4
    config.checkpoint_every_steps = 200
    return config
