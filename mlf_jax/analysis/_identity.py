"""Identity mapping of spikes through a residual block (Feng et al. 2022, Theorem 2; the
method page, section [Theorem 2: identity mapping][theorem-2])."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from mlf_jax.nn.blocks import BasicBlock

__all__ = ["identity_probe"]

#: bn2 output that keeps an MLF neuron below any sensible threshold for ever.
SILENT_POTENTIAL = -1.0e4


def _silenced(variables: Mapping[str, Any], shortcut: str) -> dict[str, Any]:
    """A copy of ``variables`` in which bn2 outputs a constant (scale 0, bias c).

    ``'ds'``: ``c`` far below threshold, so ``MLF(residual)`` fires nothing.
    ``'standard'``: ``c = 0``, so the residual adds exactly nothing before the neuron.
    """
    params = variables.get("params", {})
    bn2 = params.get("bn2") if isinstance(params, Mapping) else None
    if not isinstance(bn2, Mapping) or "scale" not in bn2 or "bias" not in bn2:
        raise ValueError(
            "silence_residual needs bn2 with affine parameters ('params/bn2/scale' and "
            "'params/bn2/bias')"
        )
    bias = SILENT_POTENTIAL if shortcut == "ds" else 0.0
    new_bn2 = {
        **bn2,
        "scale": jnp.zeros_like(bn2["scale"]),
        "bias": jnp.full_like(bn2["bias"], bias),
    }
    return {**variables, "params": {**params, "bn2": new_bn2}}


def identity_probe(
    block: BasicBlock,
    variables: Mapping[str, Any],
    x: jax.Array,
    *,
    silence_residual: bool = True,
    train: bool = False,
) -> float:
    """Relative deviation ``||block(x) - x|| / ||x||`` of a block with identity shortcut.

    Theorem 2 of the paper: if the residual branch fires nothing, a DS block
    (``shortcut='ds'``, ``out = MLF(residual) + x``) outputs exactly its input, so
    the deviation is ``0.0``. A standard block (``out = MLF(residual + x)``) then
    computes ``MLF(x)``, which is not the identity on spike counts (constant 2.0
    gives 2, 2, 3, ... with thresholds 0.6, 1.6, 2.6).

    Args:
      block: a :class:`mlf_jax.nn.BasicBlock` with stride 1 and ``features`` equal
        to the input width (identity shortcut).
      variables: its variables; not modified.
      x: time-major input ``[T, B, H, W, C]``, typically spike counts.
      silence_residual: probe a copy of ``variables`` in which the residual branch
        contributes nothing: bn2's scale is set to 0 and its bias to
        :data:`SILENT_POTENTIAL` (``'ds'``: ``MLF(residual)`` never fires) or to 0
        (``'standard'``: the residual adds 0 before the neuron). ``False`` probes the
        block as it is.
      train: batch statistics (``True``; updates discarded) or running statistics.

    Returns:
      The relative deviation as a Python float (computed in float64).

    Raises:
      ValueError: for a block without identity shortcut, input that is not
        ``[T, B, H, W, C]`` or is all zeros, or bn2 without affine parameters.
    """
    if not isinstance(block, BasicBlock):
        raise ValueError(f"block must be a mlf_jax.nn.BasicBlock, got {type(block).__name__}")
    x = jnp.asarray(x)
    if x.ndim != 5:
        raise ValueError(f"x must be time-major [T, B, H, W, C], got shape {x.shape}")
    if block.strides != 1 or x.shape[-1] != block.features:
        raise ValueError(
            "identity_probe needs an identity shortcut (strides=1 and features equal to the "
            f"input width), got strides={block.strides}, features={block.features} for "
            f"input width {x.shape[-1]}"
        )
    if not jnp.issubdtype(x.dtype, jnp.floating):
        x = x.astype(jnp.float32)
    x_np = np.asarray(x, np.float64)
    norm = np.linalg.norm(x_np)
    if norm == 0:
        raise ValueError("x is all zeros: the relative deviation is undefined")
    if silence_residual:
        variables = _silenced(variables, block.shortcut)

    def run(variables, x):
        if train:
            return block.apply(variables, x, True, mutable=["batch_stats"])[0]
        return block.apply(variables, x, False)

    out = jax.jit(run)(variables, x)
    return float(np.linalg.norm(np.asarray(out, np.float64) - x_np) / norm)
