"""Unconstrained parameterisations of neuron constants, for learning them by gradient descent.

A leak (decay factor) must stay in ``(0, 1)`` and MLF thresholds must stay positive and
strictly increasing whatever step an optimiser takes. Each constant is therefore learned
through an unconstrained raw value and a map onto the allowed set:

* leak: ``tau = sigmoid(w)`` (the parametric LIF of Fang et al., ICCV 2021, as in
  SpikingJelly's ``ParametricLIFNode``), initialised with ``w = log(tau / (1 - tau))``;
* thresholds: ``V_th,k = softplus(r_1) + ... + softplus(r_k)``, i.e. the first threshold and
  then positive gaps, initialised with ``r_k = softplus^-1(V_th,k - V_th,k-1)``
  (``V_th,0 = 0``).

The forward maps take arrays (traced or not); the inverses take concrete values, check
them and return float64 NumPy arrays (the initial raw values). No Flax here.

The bounds hold exactly in real numbers; in floating point a raw value far out saturates:
``sigmoid(w)`` rounds to 1.0 for ``w`` above about 17 in float32 (still a valid leak), and a
gap ``softplus(r)`` too small to change the threshold below it (``r`` below about -17 in
float32 for thresholds near 1) leaves two equal thresholds.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["leak_from_logit", "logit_of_leak", "thresholds_from_raw", "raw_of_thresholds"]

Array = jax.Array
ArrayLike = jax.typing.ArrayLike


def leak_from_logit(w: ArrayLike) -> Array:
    """``tau = sigmoid(w)``, in ``(0, 1)`` for every finite ``w``."""
    return jax.nn.sigmoid(w)


def logit_of_leak(tau: float) -> np.ndarray:
    """The ``w`` with ``sigmoid(w) = tau`` (a float64 scalar array).

    Raises:
      ValueError: unless ``tau`` is a real scalar strictly between 0 and 1 (0 and 1 have no
        finite logit).
    """
    t = np.asarray(tau, dtype=np.float64)
    if t.ndim != 0 or not (0.0 < float(t) < 1.0):
        raise ValueError(
            f"a learned leak tau must be a scalar strictly between 0 and 1 (its logit is "
            f"the parameter), got {tau!r}"
        )
    return np.log(t) - np.log1p(-t)


def thresholds_from_raw(raw: ArrayLike) -> Array:
    """``cumsum(softplus(raw))``: K positive, strictly increasing thresholds from K reals."""
    raw = jnp.asarray(raw)
    if raw.ndim != 1 or raw.shape[0] == 0:
        raise ValueError(f"raw thresholds must be a non-empty 1-D array, got shape {raw.shape}")
    return jnp.cumsum(jax.nn.softplus(raw))


def raw_of_thresholds(thresholds: Sequence[float] | ArrayLike) -> np.ndarray:
    """The raw values whose :func:`thresholds_from_raw` is ``thresholds`` (float64 ``[K]``).

    ``softplus^-1(y) = y + log(1 - exp(-y))``, evaluated as ``y + log(-expm1(-y))``.

    Raises:
      ValueError: unless ``thresholds`` is a non-empty 1-D sequence of finite, positive,
        strictly increasing numbers.
    """
    th = np.asarray(thresholds, dtype=np.float64)
    if th.ndim != 1 or th.size == 0 or not np.all(np.isfinite(th)):
        raise ValueError(
            f"learned thresholds must be a non-empty 1-D sequence of finite numbers, got "
            f"{np.asarray(thresholds).tolist()!r}"
        )
    gaps = np.diff(th, prepend=0.0)
    if not np.all(gaps > 0):
        raise ValueError(
            "learned thresholds must be positive and strictly increasing (they are "
            f"parameterised as a first threshold plus positive gaps), got {th.tolist()}"
        )
    return gaps + np.log(-np.expm1(-gaps))
