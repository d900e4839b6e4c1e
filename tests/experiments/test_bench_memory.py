"""The memory benchmark's net comes from ``experiments.models.build_model`` (the Gesture
config) and is the one its recorded figures were planned for."""

import pytest

import mlf_jax as mj
from experiments.bench import memory


@pytest.mark.parametrize("depth, time_steps, remat", [(68, 40, False), (20, 10, True)])
def test_the_net_is_the_gesture_configs_as_recorded(depth, time_steps, remat):
    recorded = mj.models.resnet(
        depth, widths=(16, 32, 64), num_classes=11, time_steps=time_steps, in_channels=2,
        input_norm=True, remat=remat,
    )  # fmt: skip
    assert memory.model_of(depth, time_steps, remat) == recorded
