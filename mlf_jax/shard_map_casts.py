"""Casts for ``jax.shard_map``'s varying-manual-axes checks, shared by the custom-gradient
kernels (the fused neuron, the patch-gradient convolution)."""

from __future__ import annotations

import jax
from jax import lax

__all__ = ["vary_alike"]

Array = jax.Array


def vary_alike(*arrays: Array) -> tuple[Array, ...]:
    """Inside ``jax.shard_map`` (``check_vma=True``), marks every array as varying over
    the union of the manual axes any of them varies over. The backward pass returns
    cotangents that vary like ``x`` (e.g. ``dth`` summed over the local shard only);
    casting the replicated ``thresholds``/``tau`` to varying *outside* the custom_vjp
    lets autodiff transpose that cast into the ``psum`` over devices. No-op elsewhere."""
    vma = frozenset().union(*(_varying_axes(a) for a in arrays))
    return tuple(_pvary(a, tuple(sorted(vma - _varying_axes(a)))) for a in arrays)


def _pvary(a: Array, axes: tuple) -> Array:
    """``a`` cast to varying over the manual mesh ``axes``: ``lax.pcast(..., to='varying')``,
    or ``lax.pvary`` on the jax versions before ``pcast`` existed."""
    if hasattr(lax, "pcast"):
        return lax.pcast(a, axes, to="varying")
    return lax.pvary(a, axes) if axes else a  # type: ignore[attr-defined]


def _varying_axes(a: Array) -> frozenset:
    """The manual mesh axes ``a`` varies over (jax 0.10: ``typeof(a).mat.varying``)."""
    aval = jax.typeof(a)
    mat = getattr(aval, "mat", None)
    return frozenset(mat.varying) if mat is not None else frozenset(getattr(aval, "vma", ()))
