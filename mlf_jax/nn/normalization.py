"""Threshold-dependent batch normalisation (tdBN, Zheng et al. 2021; the method page,
section [tdBN][tdbn])."""

from __future__ import annotations

import math
from typing import Any

import jax
import jax.numpy as jnp
from flax import linen as nn
from jax import lax

__all__ = ["TdBatchNorm"]


class TdBatchNorm(nn.Module):
    """Batch norm over time, batch and space together, scaled to the threshold.

    For input ``[..., C]`` (e.g. ``[T, B, H, W, C]`` or the folded
    ``[T*B, H, W, C]``) the statistics are per channel, over all other axes::

        y = alpha * v_th * (x - mean) / (sqrt(var) + epsilon)
        y = scale * y + bias

    ``epsilon`` is added to the standard deviation, as in the authors' code.
    Training uses the biased batch variance and updates the running statistics
    with the unbiased one (``n / (n - 1)``):
    ``running = momentum * running + (1 - momentum) * batch`` (Flax convention:
    ``momentum=0.9`` is PyTorch's 0.1). Evaluation
    (``use_running_average=True``) uses the running statistics.

    With ``axis_name`` set (inside ``pmap``/``shard_map``/named ``vmap``), the
    statistics are taken over the global batch across that axis (except in
    ``init``, which may run outside the mapped function).
    """

    use_running_average: bool = False
    alpha: float = 1.0
    v_th: float = 0.6
    momentum: float = 0.9
    epsilon: float = 1e-5
    use_scale: bool = True
    use_bias: bool = True
    axis_name: str | None = None
    dtype: Any = None  # output dtype; statistics are always float32
    scale_init: nn.initializers.Initializer = nn.initializers.ones
    bias_init: nn.initializers.Initializer = nn.initializers.zeros

    @nn.compact
    def __call__(self, x: jax.Array, use_running_average: bool | None = None) -> jax.Array:
        use_running_average = nn.merge_param(
            "use_running_average", self.use_running_average, use_running_average
        )
        if x.ndim < 2:
            raise ValueError(f"TdBatchNorm expects input [..., C] with rank >= 2, got {x.shape}")
        features = x.shape[-1]
        axes = tuple(range(x.ndim - 1))
        xf = x.astype(jnp.float32)
        ra_mean = self.variable("batch_stats", "mean", jnp.zeros, (features,), jnp.float32)
        ra_var = self.variable("batch_stats", "var", jnp.ones, (features,), jnp.float32)

        if use_running_average:
            mean, var = ra_mean.value, ra_var.value
        else:
            n = math.prod(x.shape[:-1])
            # Cross-device statistics; skipped at init so that the model can be
            # initialised outside pmap/shard_map.
            across = self.axis_name is not None and not self.is_initializing()
            mean = xf.mean(axes)
            if across:
                mean = lax.pmean(mean, self.axis_name)
            var = jnp.square(xf - mean).mean(axes)  # biased, two-pass
            if across:
                var = lax.pmean(var, self.axis_name)
                n *= lax.axis_size(self.axis_name)
            if not self.is_initializing():
                unbiased = var * (n / (n - 1)) if n > 1 else var
                m = self.momentum
                ra_mean.value = m * ra_mean.value + (1 - m) * mean
                ra_var.value = m * ra_var.value + (1 - m) * unbiased

        y = (self.alpha * self.v_th) * (xf - mean) / (jnp.sqrt(var) + self.epsilon)
        if self.use_scale:
            y = y * self.param("scale", self.scale_init, (features,), jnp.float32)
        if self.use_bias:
            y = y + self.param("bias", self.bias_init, (features,), jnp.float32)
        return y.astype(self.dtype or x.dtype)
