"""N-MNIST (tonic layout): a small DS-ResNet-8 on 10 frames of 30 ms, 34x34."""

import ml_collections

from experiments.configs import base


def get_config() -> ml_collections.ConfigDict:
    config = base.get_config()
    config.dataset = "nmnist"
    config.data_dir = ""  # the folder holding tonic's NMNIST/ layout
    config.model.depth = 8
    config.model.widths = (16, 32, 64)
    config.model.time_steps = 10  # frames over the first 300 ms (10 x 30 ms)
    config.batch_size = 64
    config.num_epochs = 10
    config.schedule = "cosine"
    return config
