"""The paper's DVS128 Gesture run: DS-ResNet-20 (widths 16/32/64), T = 40 frames of 30 ms.

The paper's settings: 120 epochs, batch 28, weight decay 1e-4, tdBN without affine on the input.
Reported: 97.29 %.
The model is the library's preset ``mlf_jax.models.gesture_resnet20()`` (tested).
"""

import ml_collections

from experiments.configs import base


def get_config() -> ml_collections.ConfigDict:
    config = base.get_config()
    config.dataset = "dvs_gesture"
    config.data_dir = ""  # the folder holding tonic's DVSGesture/ layout
    config.model.depth = 20
    config.model.widths = (16, 32, 64)
    config.model.time_steps = 40  # frames over the first 1.2 s (40 x 30 ms); T must divide 1.2 s
    config.model.input_norm = True
    config.batch_size = 28
    config.eval_batch_size = 28
    config.num_epochs = 120
    config.weight_decay = 1e-4
    return config
