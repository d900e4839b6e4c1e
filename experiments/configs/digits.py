"""A smoke run on sklearn's 8x8 digits (ships with scikit-learn): seconds on a CPU."""

import ml_collections

from experiments.configs import base


def get_config() -> ml_collections.ConfigDict:
    config = base.get_config()
    config.dataset = "digits"
    config.model.depth = 8
    config.model.widths = (8, 8, 16)
    config.model.time_steps = 2
    config.batch_size = 32
    config.eval_batch_size = 120
    config.num_epochs = 5
    config.learning_rate = 0.05
    config.schedule = "cosine"
    config.log_every = 10
    return config
