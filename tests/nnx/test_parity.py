"""The paper's three presets and the main job's net in NNX give the Linen logits (eval and
train), gradients and running-statistics updates for the same weights. Small images keep
them quick: the parameters' shapes do not depend on the image size."""

import jax
import pytest
from flax import nnx

import mlf_jax.nnx as mjx
from experiments.configs import fashion_mnist
from experiments.models import build_model

from ._parity import check_same_as_linen

#: Tolerances of two float32 programs that compute the same sums (XLA may fuse and order
#: them differently in the NNX program and the Linen one).
RTOL, ATOL = 1e-5, 1e-6


def _images(shape):
    return jax.random.normal(jax.random.key(0), shape)


@pytest.mark.slow
@pytest.mark.parametrize(
    "preset, shape",
    [
        (mjx.cifar10_resnet20, (2, 8, 8, 3)),
        (mjx.gesture_resnet20, (40, 2, 8, 8, 2)),  # time-major event frames
        (mjx.cifar10dvs_resnet14, (10, 2, 8, 8, 2)),
    ],
    ids=lambda v: getattr(v, "__name__", ""),
)
def test_a_paper_preset_is_the_linen_preset(preset, shape):
    net = preset(rngs=nnx.Rngs(0))
    check_same_as_linen(net, _images(shape), rtol=RTOL, atol=ATOL)


def test_the_main_jobs_net_is_the_linen_net():
    config = fashion_mnist.get_config()
    net = mjx.from_linen(build_model(config), rngs=nnx.Rngs(0))
    assert net.neuron_model().learn_thresholds
    check_same_as_linen(net, _images((4, 12, 12, 1)), rtol=RTOL, atol=ATOL)
