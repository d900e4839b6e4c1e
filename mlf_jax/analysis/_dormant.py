"""Surrogate windows, per-level surrogate derivatives and dormant units (Feng et al. 2022).

An MLF unit with thresholds ``th_1 < ... < th_K`` receives, at one time step, the
surrogate derivative ``g(u_k - th_k)`` through each level ``k``. It is *dormant*
at that step when every one of them is zero: no gradient flows through the unit.
With the rectangular surrogate of width ``a`` and thresholds spaced by ``a``, the
K windows tile ``[th_1 - a/2, th_K + a/2)``, which is how MLF reduces dormancy (the
method page, section [Dormant units][dormant-units]).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from mlf_jax.analysis._record import LayerRecord
from mlf_jax.checks import check_thresholds
from mlf_jax.surrogate import Surrogate, get_surrogate

__all__ = [
    "surrogate_windows",
    "surrogate_derivative",
    "dormant_mask",
    "dormant_fraction",
    "dormant_fractions",
]


def surrogate_windows(
    thresholds: Sequence[float], surrogate: Surrogate | str
) -> list[tuple[float, float]]:
    """Per level, the open interval of potential where ``g(u - th_k)`` can be non-zero.

    ``th_k + surrogate.support()``; infinite for surrogates without compact support
    (sigmoid, arctan). Rectangular of width 1 with thresholds ``(0.6, 1.6, 2.6)``:
    ``[(0.1, 1.1), (1.1, 2.1), (2.1, 3.1)]``.
    """
    lo, hi = get_surrogate(surrogate).support()
    return [(float(t + lo), float(t + hi)) for t in check_thresholds(thresholds, increasing=False)]


def surrogate_derivative(
    membrane: jax.Array, thresholds: Sequence[float], surrogate: Surrogate | str
) -> jax.Array:
    """``g(u_k - th_k)`` per level: the surrogate derivative each level passes back.

    Args:
      membrane: per-level potentials ``[T, K, ...]`` (e.g. ``LayerRecord.membrane``).
      thresholds: the K thresholds, in level order.
      surrogate: the surrogate the neuron uses.

    Returns:
      ``[T, K, ...]`` array (floating, the dtype of ``membrane`` or float32).
    """
    surrogate = get_surrogate(surrogate)
    th = check_thresholds(thresholds, increasing=False)
    u = jnp.asarray(membrane)
    if u.ndim < 2:
        raise ValueError(f"membrane must have shape [T, K, ...], got {u.shape}")
    if u.shape[1] != th.size:
        raise ValueError(
            f"membrane has K={u.shape[1]} levels (axis 1 of {u.shape}) but "
            f"{th.size} thresholds were given"
        )
    if not jnp.issubdtype(u.dtype, jnp.floating):
        u = u.astype(jnp.float32)
    levels = jnp.asarray(th, u.dtype).reshape((1, th.size) + (1,) * (u.ndim - 2))
    return surrogate.grad(u - levels)


def dormant_mask(
    membrane: jax.Array,
    thresholds: Sequence[float],
    surrogate: Surrogate | str,
    *,
    atol: float = 0.0,
) -> jax.Array:
    """Which units are dormant at which step: ``g(u_k - th_k) <= atol`` at every level.

    With the default ``atol=0`` this is exactly "the surrogate derivative is zero at
    all K levels", as computed in the membrane's dtype (so it matches the gradient
    used in training). Surrogates with infinite support (sigmoid, arctan) make
    nothing dormant except where ``g`` underflows to 0 (far above threshold:
    ``sigmoid(4.0)`` in float32 for ``u - th`` above about 4.5); pass a small ``atol``
    to count "effectively dormant" units instead.

    Args:
      membrane: per-level potentials ``[T, K, B, ...]``.
      thresholds: the neuron's thresholds, one per level.
      surrogate: the neuron's surrogate.
      atol: derivative at or below which a level counts as passing nothing.

    Returns:
      Boolean ``[T, B, ...]`` (the level axis reduced).
    """
    if not atol >= 0:
        raise ValueError(f"atol must be >= 0, got {atol!r}")
    g = surrogate_derivative(membrane, thresholds, surrogate)
    return jnp.all(g <= atol, axis=1)


def dormant_fraction(
    membrane: jax.Array,
    thresholds: Sequence[float],
    surrogate: Surrogate | str,
    *,
    atol: float = 0.0,
) -> jax.Array:
    """Fraction of (time step, unit) pairs that are dormant: the mean of :func:`dormant_mask`,
    a float32 scalar array (usable under ``jit``)."""
    mask = dormant_mask(membrane, thresholds, surrogate, atol=atol)
    return jnp.mean(mask.astype(jnp.float32))


def dormant_fractions(
    records: Mapping[str, LayerRecord],
    thresholds: Sequence[float] | None = None,
    surrogate: Surrogate | str | None = None,
    *,
    atol: float = 0.0,
) -> dict[str, float]:
    """:func:`dormant_fraction` of every layer of :func:`record`'s output, in its order, as
    Python floats (for logs and JSON).

    By default each layer's own thresholds and surrogate are used: those of the neuron model
    it ran, learned thresholds included (``record.model``, which :func:`record` sets).
    ``thresholds`` and ``surrogate`` override them for every layer, e.g. for records made
    by :func:`collect`, which hold no model.

    Raises:
      ValueError: a layer's record holds no model and ``thresholds`` or ``surrogate`` is
        not given; or ``thresholds`` differ from those a layer computed with (its learned
        ones), which would give a fraction of other windows than the layer's.
    """
    out = {}
    for name, rec in records.items():
        th, sur = _layer_settings(name, rec, thresholds, surrogate)
        out[name] = float(dormant_fraction(rec.membrane, th, sur, atol=atol))
    return out


def _layer_settings(
    name: str, rec: LayerRecord, thresholds: Any, surrogate: Any
) -> tuple[Sequence[float], Surrogate | str]:
    """The thresholds and surrogate of the layer ``name`` for its dormant fraction."""
    model = rec.model
    if model is None:
        if thresholds is None or surrogate is None:
            raise ValueError(
                f"layer {name!r}: its record holds no neuron model (made by collect?): pass "
                "thresholds and surrogate, or record it with mj.analysis.record"
            )
        return thresholds, surrogate
    own = tuple(float(v) for v in np.asarray(model.level_thresholds()).ravel())
    if thresholds is not None and not np.allclose(
        check_thresholds(thresholds, increasing=False), own, rtol=1e-6, atol=1e-6
    ):
        raise ValueError(
            f"layer {name!r} computes with thresholds {_short(own)}, not "
            f"{_short(thresholds)}: leave thresholds out to use each layer's own"
        )
    if surrogate is None:
        surrogate = getattr(model, "surrogate", None)
        if surrogate is None:
            raise ValueError(f"layer {name!r}: {type(model).__name__} has no surrogate: pass one")
    return own, surrogate


def _short(values: Any) -> str:
    return "(" + ", ".join(f"{float(v):.4g}" for v in np.asarray(values).ravel()) + ")"
