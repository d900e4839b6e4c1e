"""The depth study's grid and common budget (``python -m experiments.depth_study``).

{spiking ResNet, DS-ResNet} x {LIF, MLF K = 3} x depths, every cell trained on the same
Fashion-MNIST subset with the same budget once per seed. Override any key on the command
line, e.g. ``--config.depths=8,32 --config.seeds=0 --config.neurons=mlf``.
"""

import ml_collections


def get_config() -> ml_collections.ConfigDict:
    config = ml_collections.ConfigDict()
    config.depths = (8, 32, 68)  # 6n + 2
    config.widths = (8, 16, 32)  # channels of the three stages
    config.shortcuts = ("standard", "ds")  # spiking ResNet and/or DS-ResNet
    config.neurons = ("lif", "mlf")  # K = 1 and/or K = 3
    config.time_steps = 2  # T, direct encoding
    config.train_size = 12000  # training examples: a fixed random subset per seed
    config.epochs = 3
    config.batch_size = 64
    config.learning_rate = 0.1  # peak; cosine decay after a 0.1-epoch warm-up
    config.probe_size = 256  # examples of the dormant and gradient probes
    config.train_eval_size = 5000  # training examples of the train accuracy
    config.seeds = (0, 1, 2)  # one run per cell and seed (subset, init, order)
    config.measure = True  # measure finished cells (needs mlf_jax.analysis)
    return config
