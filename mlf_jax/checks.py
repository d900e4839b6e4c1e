"""Argument checks shared by the neuron functions, their kernels, the zoo and the analysis:
time-major input, leak and thresholds. Shapes and dtypes are checked always (under ``jit``
too); values only when concrete (a traced value cannot be read)."""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np

__all__ = [
    "as_thresholds",
    "check_sequence_input",
    "check_tau",
    "check_thresholds",
    "is_concrete",
]

Array = jax.Array
ArrayLike = jax.typing.ArrayLike


def is_concrete(value) -> bool:
    """No tracer in ``value`` (an array, a number or a sequence of them)."""
    return not any(isinstance(v, jax.core.Tracer) for v in jax.tree.leaves(value))


def check_tau(tau) -> None:
    """``tau`` is a scalar (checked under ``jit`` too) in ``[0, 1]`` (when concrete)."""
    if np.ndim(tau) != 0:
        raise ValueError(f"tau must be a scalar decay factor in [0, 1], got shape {np.shape(tau)}")
    if is_concrete(tau) and not (0.0 <= float(tau) <= 1.0):
        raise ValueError(f"tau must be a scalar decay factor in [0, 1], got {tau!r}")


def check_thresholds(
    thresholds: Sequence[float] | ArrayLike, *, increasing: bool = True
) -> np.ndarray:
    """Concrete thresholds as a float64 ``[K]`` numpy array; ``ValueError`` unless 1-D,
    non-empty, finite and (``increasing``) strictly increasing. Numpy only: checking a
    neuron's settings does not start a JAX backend."""
    given = np.asarray(thresholds, dtype=np.float64)
    if given.ndim != 1 or given.size == 0:
        raise ValueError(
            f"thresholds must be a non-empty 1-D sequence (one per level), got shape {given.shape}"
        )
    if not np.all(np.isfinite(given)):
        raise ValueError(f"thresholds must be finite, got {given.tolist()}")
    if increasing and given.size > 1 and not np.all(np.diff(given) > 0):
        raise ValueError(
            f"thresholds must be strictly increasing (V_th,1 < V_th,2 < ...), got {given.tolist()}"
        )
    return given


def as_thresholds(thresholds: Sequence[float] | ArrayLike, dtype) -> Array:
    """Validates thresholds (1-D, strictly increasing when concrete) as a [K] array."""
    if is_concrete(thresholds):
        check_thresholds(thresholds)
    th = jnp.asarray(thresholds, dtype=floating(dtype))
    if th.ndim != 1 or th.shape[0] == 0:
        raise ValueError(
            f"thresholds must be a non-empty 1-D sequence (one per level), got shape {th.shape}"
        )
    return th


def floating(dtype):
    """``dtype`` if floating, else float32: thresholds are never rounded to an integer
    input's dtype (1.5 would become 1 and fire at 1.25)."""
    return dtype if jnp.issubdtype(dtype, jnp.floating) else jnp.float32


def check_sequence_input(x: Array, name: str) -> Array:
    """``x`` as an array of shape ``[T, ...]`` with ``T >= 1`` and a floating dtype; else a
    ``ValueError`` or ``TypeError`` that starts with ``name``'s expectation."""
    x = jnp.asarray(x)
    if x.ndim < 1:
        raise ValueError(f"{name} expects input of shape [T, ...] (time-major), got a scalar")
    if x.shape[0] == 0:
        raise ValueError(
            f"{name} expects input of shape [T, ...] with T >= 1 time steps, got shape {x.shape}"
        )
    if not jnp.issubdtype(x.dtype, jnp.floating):
        raise TypeError(f"{name} expects a floating input, got dtype {x.dtype}")
    return x
