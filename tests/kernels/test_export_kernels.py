"""Every neuron kernel lowers for TPU and CUDA: ``jax.export`` of forward + backward.

Runs on a CPU host (no accelerator needed): ``jax.export`` lowers for the named
platform without compiling. A kernel that cannot lower for a platform (e.g. a
Pallas block that exceeds Mosaic GPU's shared memory) fails here. What is not
checked: TPU tiling rules that Mosaic only applies when compiling on a TPU (the
Pallas kernel's blocks are chosen to satisfy them), and running the kernels.
"""

import re

import jax
import jax.numpy as jnp
import pytest

from mlf_jax.kernels.pallas_mlf import mlf_pallas
from mlf_jax.neurons import mlf

PLATFORMS = ("tpu", "cuda")
#: The custom call each platform's Pallas kernel lowers to.
PALLAS_TARGET = {"tpu": "tpu_custom_call", "cuda": "mosaic_gpu_v2"}
#: The DVS128 Gesture stem layer: T = 40 over 2 x 16 x 32 x 32 units.
GESTURE = (40, 2, 16, 32, 32)

KERNELS = {
    "scan": lambda x: mlf(x, impl="scan"),
    "fused": lambda x: mlf(x, impl="fused"),
    "pallas": lambda x: mlf_pallas(x, interpret=False),
}


def _export_vjp(fn, shape, platform, dtype=jnp.float32) -> str:
    """StableHLO text of ``jax.export`` of spikes and dL/dx (L = sum(spikes * g))."""

    def fwd_bwd(x, g):
        out, vjp = jax.vjp(fn, x)
        return out, vjp(g)[0]

    spec = jax.ShapeDtypeStruct(shape, dtype)
    exported = jax.export.export(jax.jit(fwd_bwd), platforms=[platform])(spec, spec)
    assert exported.platforms == (platform,)
    return exported.mlir_module()


@pytest.mark.parametrize("platform", PLATFORMS)
@pytest.mark.parametrize("kernel", sorted(KERNELS))
@pytest.mark.parametrize("shape", [(4, 1000), (12, 3, 5, 7)], ids=str)
def test_forward_backward_exports(kernel, platform, shape):
    text = _export_vjp(KERNELS[kernel], shape, platform)
    if kernel == "pallas":
        # Compiled kernels (forward and backward), not an interpreted fallback.
        targets = re.findall(r"custom_call @(\S+?)\(", text)
        assert targets.count(PALLAS_TARGET[platform]) == 2, targets


@pytest.mark.parametrize("platform", PLATFORMS)
@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16], ids=lambda d: d.__name__)
def test_pallas_gesture_layer_exports(platform, dtype):
    # Before the blocks were sized per platform, CUDA failed here with "Mosaic GPU kernel
    # exceeds available shared memory: smem_bytes=819208 > max_smem_bytes=232448".
    text = _export_vjp(KERNELS["pallas"], GESTURE, platform, dtype)
    assert re.findall(r"custom_call @(\S+?)\(", text).count(PALLAS_TARGET[platform]) == 2


@pytest.mark.parametrize("platform", PLATFORMS)
def test_pallas_long_sequence_exports(platform):
    # T = 400 does not fit one GPU program's shared memory: several sequential time blocks.
    _export_vjp(KERNELS["pallas"], (400, 4096), platform)
