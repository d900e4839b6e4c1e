"""Firing statistics of recorded spike counts."""

from __future__ import annotations

from collections.abc import Mapping

import jax
import jax.numpy as jnp

from mlf_jax.analysis._record import LayerRecord

__all__ = ["firing_rate", "firing_rates", "silent_fraction"]


def _check_levels(levels: int | None) -> None:
    if levels is not None and (
        not isinstance(levels, int) or isinstance(levels, bool) or levels < 1
    ):
        raise ValueError(f"levels must be a positive integer or None, got {levels!r}")


def firing_rate(spikes: jax.Array, levels: int | None = None) -> jax.Array:
    """Mean spike count per unit per time step, a float32 scalar array (usable under
    ``jit``; ``float(...)`` for a number).

    Args:
      spikes: spike counts ``[T, B, ...]`` (``0..K`` for MLF).
      levels: if given (K), the rate is divided by K: the fraction of the maximal
        output (every level firing at every step), in ``[0, 1]``.
    """
    _check_levels(levels)
    s = jnp.asarray(spikes)
    if s.size == 0:
        raise ValueError(f"spikes is empty (shape {s.shape})")
    rate = jnp.mean(s.astype(jnp.float32))
    return rate / levels if levels is not None else rate


def firing_rates(records: Mapping[str, LayerRecord], levels: int | None = None) -> dict[str, float]:
    """:func:`firing_rate` of every layer of :func:`record`'s output, in its order, as Python
    floats (for logs and JSON)."""
    return {name: float(firing_rate(rec.spikes, levels)) for name, rec in records.items()}


def silent_fraction(spikes: jax.Array) -> jax.Array:
    """Fraction of units (per example: the ``[B, ...]`` positions) that never fire over all T,
    a float32 scalar array (usable under ``jit``)."""
    s = jnp.asarray(spikes)
    if s.ndim < 2 or s.size == 0:
        raise ValueError(f"spikes must be a non-empty [T, B, ...] array, got shape {s.shape}")
    return jnp.mean(jnp.all(s == 0, axis=0).astype(jnp.float32))
