"""Input encoders: static inputs ``x`` (any shape) to time-major sequences ``[T, *x.shape]``.

Pure functions of arrays (no Flax), usable under ``jit`` (with ``time_steps`` and the
options static) and ``vmap``:

* :func:`direct`: the input itself at every step (the paper's "direct encoding"): the first
  layer's convolution turns it into currents, and the first spiking layer encodes them.
* :func:`rate`: Bernoulli spike trains, one independent draw per step and element, firing
  with probability ``clip(gain * x, 0, 1)`` (the discrete-time Poisson code).
* :func:`latency`: one spike per element, earlier for larger ``x`` (a time-to-first-spike
  code), on a linear or a logarithmic time scale.

``rate`` and ``latency`` read ``x`` as intensities in ``[0, 1]`` (values outside are
clipped). A NaN in ``x`` gives NaN at every step of that element, never a silent 0.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["ENCODERS", "LATENCY_CODES", "direct", "rate", "latency"]

Array = jax.Array
ArrayLike = jax.typing.ArrayLike

#: Encoder names (``mlf_jax.models.ResNet(encoder=...)``).
ENCODERS = ("direct", "rate", "latency")
#: Time scales of :func:`latency`.
LATENCY_CODES = ("linear", "log")


def _check_time_steps(time_steps: int, name: str) -> int:
    if isinstance(time_steps, bool) or not isinstance(time_steps, (int, np.integer)):
        raise TypeError(
            f"{name}: time_steps must be a Python integer (static under jit), got "
            f"{time_steps!r} ({type(time_steps).__name__})"
        )
    if time_steps < 1:
        raise ValueError(f"{name}: time_steps must be >= 1, got {time_steps}")
    return int(time_steps)


def _check_intensity(x: ArrayLike, name: str) -> Array:
    x = jnp.asarray(x)
    if not jnp.issubdtype(x.dtype, jnp.floating):
        raise TypeError(
            f"{name} expects intensities as a floating array in [0, 1] (e.g. uint8 pixels / "
            f"255), got dtype {x.dtype}"
        )
    return x


def _check_positive(name: str, what: str, value: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name}: {what} must be a Python number, got {type(value).__name__}")
    if not (value > 0 and math.isfinite(value)):
        raise ValueError(f"{name}: {what} must be a finite positive number, got {value!r}")
    return float(value)


def _nan_through(x: Array, spikes: Array) -> Array:
    """``spikes`` with NaN at every step where ``x`` is NaN."""
    return jnp.where(jnp.isnan(x)[None], jnp.nan, spikes)


def direct(x: ArrayLike, time_steps: int) -> Array:
    """``x`` repeated ``time_steps`` times along a new leading axis: ``[T, *x.shape]``.

    The same values (bit for bit) and dtype as ``x``, any dtype; a broadcast, so it costs
    no memory until something writes to it.
    """
    t = _check_time_steps(time_steps, "direct")
    x = jnp.asarray(x)
    return jnp.broadcast_to(x[None], (t, *x.shape))


def rate(key: Array, x: ArrayLike, time_steps: int, *, gain: float = 1.0) -> Array:
    """Bernoulli (discrete-time Poisson) spike trains ``[T, *x.shape]`` in ``{0, 1}``.

    At every step ``t`` and element ``i`` independently, ``o[t, i] = 1`` with probability
    ``p_i = clip(gain * x_i, 0, 1)``: over T steps an element fires ``Binomial(T, p_i)``
    times, ``p_i T`` on average.

    Args:
      key: a JAX PRNG key (``jax.random.key``); the same key gives the same spikes.
      x: intensities, floating, ideally in ``[0, 1]`` (clipped after scaling).
      time_steps: T, a positive Python integer.
      gain: scale of the intensities before clipping (a positive number).

    Returns:
      Spikes in the dtype of ``x``.
    """
    t = _check_time_steps(time_steps, "rate")
    x = _check_intensity(x, "rate")
    gain = _check_positive("rate", "gain", gain)
    p = jnp.clip(gain * x, 0.0, 1.0)
    spikes = jax.random.bernoulli(key, p, (t, *x.shape)).astype(x.dtype)
    return _nan_through(x, spikes)


def latency(x: ArrayLike, time_steps: int, *, code: str = "linear", eps: float = 0.01) -> Array:
    """One spike per element at step ``t(x)``, earlier for brighter: ``[T, *x.shape]``.

    With ``c = clip(x, 0, 1)`` and a normalised delay ``s(c)`` in ``[0, 1]``,

    * ``code='linear'``: ``s = 1 - c``;
    * ``code='log'``: ``s = log(max(c, eps)) / log(eps)``: every decade of intensity
      between 1 and ``eps`` takes the same time; ``c <= eps`` gives ``s = 1``;

    the spike is at ``t = floor(s * (T - 1) + 1/2)`` (the nearest step, halves rounded up),
    so ``c = 1`` fires at step 0 and ``c = 0`` at the last step ``T - 1``; with ``T = 1``
    everything fires at step 0. ``o[t, i] = 1`` at that step and 0 elsewhere.

    Args:
      x: intensities, floating, ideally in ``[0, 1]`` (clipped).
      time_steps: T, a positive Python integer.
      code: ``'linear'`` or ``'log'`` (see :data:`LATENCY_CODES`).
      eps: the intensity mapped to the last step by the log code, in ``(0, 1)``.

    Returns:
      Spikes in the dtype of ``x``.
    """
    t = _check_time_steps(time_steps, "latency")
    x = _check_intensity(x, "latency")
    if code not in LATENCY_CODES:
        raise ValueError(f"latency: unknown code {code!r}; expected one of {LATENCY_CODES}")
    eps = _check_positive("latency", "eps", eps)
    if not eps < 1.0:
        raise ValueError(f"latency: eps must be below 1, got {eps!r}")
    # at least float32: a bfloat16 delay would round to the wrong step
    c = jnp.clip(x.astype(jnp.promote_types(x.dtype, jnp.float32)), 0.0, 1.0)
    if code == "linear":
        s = 1.0 - c
    else:
        s = jnp.log(jnp.maximum(c, eps)) / math.log(eps)
    step = jnp.floor(s * (t - 1) + 0.5).astype(jnp.int32)
    steps = jnp.arange(t, dtype=jnp.int32).reshape((t,) + (1,) * x.ndim)
    spikes = (steps == step[None]).astype(x.dtype)
    return _nan_through(x, spikes)
