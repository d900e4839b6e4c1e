"""Pallas kernels for the fused multi-level firing (MLF) neuron, forward and backward.

Same semantics as :func:`mlf_jax.neurons.mlf`. Input ``x[T, N]``;
K levels with thresholds ``th_1 < ... < th_K``; per level::

    u_k[t] = tau * u_k[t-1] * (1 - o_k[t-1]) + x[t]      u_k[-1] = o_k[-1] = 0
    o_k[t] = H(u_k[t] - th_k)                            H(z) = 1[z > 0]
    o[t]   = sum_k o_k[t]

Backward (BPTT derived by hand, checked against ``jax.grad`` through
:func:`mlf_jax.neurons.mlf`), with ``g[t] = dL/do[t]``, ``s[t]`` the surrogate
derivative at ``u_k[t] - th_k`` and ``delta[t] = dL/du_k[t]``::

    delta[t] = s[t] * (g[t] - tau * u[t] * delta[t+1] * [not detach_reset])
               + tau * (1 - o[t]) * delta[t+1],                 delta[T] = 0
    dL/dx[t] = sum_k delta_k[t]

Layout: x is flattened to ``[T, N]`` and N padded with zeros to a multiple of
the block size. The grid runs over blocks of N (independent programs); each
program loops over T inside the kernel (``lax.fori_loop``) with the K membrane
potentials and spikes as loop-carried values. The forward kernel writes the
spike counts and the K potentials ``u_k[T, N]`` (the only residuals); the
backward kernel runs the reverse loop over T, recomputing spikes and surrogate
derivatives from the potentials, and writes ``dx[T, N]``.

Status: tested on CPU in Pallas interpret mode only. The compiled paths (GPU via
Triton / Mosaic GPU, TPU via Mosaic) have not been run. Triton needs power-of-two
block sizes (the default block is a power of two; a block is never larger than
the next power of two of N).
"""

from __future__ import annotations

import functools
import math
import operator
from collections.abc import Sequence

import jax
import jax.numpy as jnp
from jax import lax
from jax.experimental import pallas as pl

from mlf_jax.neurons import _as_thresholds, _check_sequence_input, _check_tau
from mlf_jax.surrogate import Surrogate, get_surrogate, heaviside, rectangular

__all__ = ["mlf_pallas", "DEFAULT_BLOCK"]

Array = jax.Array

#: Default number of units (columns of ``[T, N]``) per program.
DEFAULT_BLOCK = 1024


def _row(t):
    """Index of row ``t`` of a ``[T, bn]`` block, kept 2-D (``[1, bn]``)."""
    return (pl.ds(t, 1), slice(None))


def _forward_kernel(x_ref, o_ref, *u_refs, thresholds, tau, time_steps):
    levels = len(thresholds)

    def body(t, carry):
        us, os = carry
        xt = x_ref[_row(t)]
        # Same expression (and order of operations) as neurons.lif_step.
        new_u = tuple(tau * us[k] * (1.0 - os[k]) + xt for k in range(levels))
        new_o = tuple(heaviside(new_u[k] - thresholds[k]) for k in range(levels))
        o_ref[_row(t)] = functools.reduce(operator.add, new_o).astype(o_ref.dtype)
        for k in range(levels):
            u_refs[k][_row(t)] = new_u[k].astype(u_refs[k].dtype)
        return new_u, new_o

    zero = jnp.zeros((1, x_ref.shape[1]), x_ref.dtype)
    rest = (zero,) * levels
    lax.fori_loop(0, time_steps, body, (rest, rest))


def _backward_kernel(g_ref, *refs, thresholds, tau, surrogate, detach_reset, time_steps):
    levels = len(thresholds)
    u_refs, dx_ref = refs[:levels], refs[levels]

    def body(i, deltas):
        t = time_steps - 1 - i
        gt = g_ref[_row(t)]
        new_deltas = []
        for k in range(levels):
            ut = u_refs[k][_row(t)]
            z = ut - thresholds[k]
            s = surrogate.grad(z).astype(ut.dtype)
            o = heaviside(z)
            do = gt if detach_reset else gt - tau * ut * deltas[k]
            new_deltas.append(s * do + tau * (1.0 - o) * deltas[k])
        dx_ref[_row(t)] = functools.reduce(operator.add, new_deltas).astype(dx_ref.dtype)
        return tuple(new_deltas)

    zero = jnp.zeros((1, g_ref.shape[1]), g_ref.dtype)
    lax.fori_loop(0, time_steps, body, (zero,) * levels)


def _block_size(n: int, block: int) -> int:
    """Columns per program: ``block``, or less for small N (next power of two of N)."""
    return min(block, pl.next_power_of_2(n))


def _pad(a: Array, n_pad: int) -> Array:
    n = a.shape[1]
    return a if n == n_pad else jnp.pad(a, ((0, 0), (0, n_pad - n)))


def _forward(x, thresholds, tau, block, interpret):
    """``x[T, N]`` -> spike counts ``[T, N]`` and the K potentials (each ``[T, N]``)."""
    time_steps, n = x.shape
    bn = _block_size(n, block)
    n_pad = pl.cdiv(n, bn) * bn
    spec = pl.BlockSpec((time_steps, bn), lambda i: (0, i))
    shape = jax.ShapeDtypeStruct((time_steps, n_pad), x.dtype)
    levels = len(thresholds)
    kernel = functools.partial(
        _forward_kernel, thresholds=thresholds, tau=tau, time_steps=time_steps
    )
    out = pl.pallas_call(
        kernel,
        out_shape=(shape,) * (1 + levels),
        grid=(n_pad // bn,),
        in_specs=[spec],
        out_specs=(spec,) * (1 + levels),
        interpret=interpret,
        name="mlf_forward",
    )(_pad(x, n_pad))
    return out[0][:, :n], tuple(u[:, :n] for u in out[1:])


def _backward(g, us, thresholds, tau, surrogate, detach_reset, block, interpret):
    """Cotangent of the spike counts ``g[T, N]`` and the potentials -> ``dx[T, N]``."""
    time_steps, n = g.shape
    bn = _block_size(n, block)
    n_pad = pl.cdiv(n, bn) * bn
    spec = pl.BlockSpec((time_steps, bn), lambda i: (0, i))
    kernel = functools.partial(
        _backward_kernel,
        thresholds=thresholds,
        tau=tau,
        surrogate=surrogate,
        detach_reset=detach_reset,
        time_steps=time_steps,
    )
    dx = pl.pallas_call(
        kernel,
        out_shape=jax.ShapeDtypeStruct((time_steps, n_pad), g.dtype),
        grid=(n_pad // bn,),
        in_specs=[spec] * (1 + len(us)),
        out_specs=spec,
        interpret=interpret,
        name="mlf_backward",
    )(_pad(g, n_pad), *(_pad(u, n_pad) for u in us))
    return dx[:, :n]


@functools.partial(jax.custom_vjp, nondiff_argnums=(1, 2, 3, 4, 5, 6))
def _mlf(x, thresholds, tau, surrogate, detach_reset, block, interpret):
    return _forward(x, thresholds, tau, block, interpret)[0]


def _mlf_fwd(x, thresholds, tau, surrogate, detach_reset, block, interpret):
    out, us = _forward(x, thresholds, tau, block, interpret)
    return out, us


def _mlf_bwd(thresholds, tau, surrogate, detach_reset, block, interpret, us, g):
    dx = _backward(g, us, thresholds, tau, surrogate, detach_reset, block, interpret)
    return (dx,)


_mlf.defvjp(_mlf_fwd, _mlf_bwd)


def _static_float(name: str, value) -> float:
    try:
        return float(value)
    except (TypeError, jax.errors.ConcretizationTypeError):
        raise TypeError(
            f"mlf_pallas needs {name} as static Python floats (they are baked into the "
            f"kernel), got {value!r}"
        ) from None


def mlf_pallas(
    x: Array,
    *,
    thresholds: Sequence[float] = (0.6, 1.6, 2.6),
    tau: float = 0.25,
    width: float = 1.0,
    detach_reset: bool = False,
    surrogate: Surrogate | str | None = None,
    block: int = DEFAULT_BLOCK,
    interpret: bool | None = None,
) -> Array:
    """:func:`mlf_jax.neurons.mlf` as two Pallas kernels (forward and hand-written backward).

    Args:
      x: input current ``[T, ...]`` (time-major, any trailing shape, floating; tested
        with float32). Flattened to ``[T, N]`` for the kernels and reshaped back.
      thresholds: K strictly increasing thresholds, static Python floats.
      tau: leak factor in ``[0, 1]``, a static Python float.
      width: width ``a`` of the paper's rectangular surrogate ``(1/a) 1[|z| < a/2]``;
        used when ``surrogate`` is None.
      detach_reset: stop the gradient through the reset term.
      surrogate: any :mod:`mlf_jax.surrogate` family (instance or name), overriding
        ``width``; its ``grad`` is evaluated inside the backward kernel.
      block: units (columns of ``[T, N]``) per program; N is padded to a multiple.
        Use a power of two (Triton needs it). For ``N < block`` the block shrinks to
        the next power of two of N.
      interpret: run the kernels in Pallas interpret mode. ``None``: interpret mode
        when the default backend is CPU, compiled otherwise. Only interpret mode on
        CPU has been run; the compiled GPU (Triton / Mosaic GPU) and TPU paths are
        untested.

    Returns:
      Spike counts ``[T, ...]`` in ``0..K``, dtype of ``x``. Differentiable with
      respect to ``x`` only (``thresholds``, ``tau`` and ``width`` are static and get
      no gradient).
    """
    x = _check_sequence_input(x, "mlf_pallas")
    if isinstance(thresholds, (int, float)):
        raise ValueError("thresholds must be a non-empty 1-D sequence (one per level)")
    traced = isinstance(thresholds, jax.core.Tracer) or isinstance(tau, jax.core.Tracer)
    if traced or any(isinstance(v, jax.core.Tracer) for v in thresholds):
        raise TypeError(
            "mlf_pallas needs thresholds and tau as static Python floats (they are baked "
            "into the kernel); use mlf_jax.neurons.mlf to differentiate with respect to them"
        )
    _check_tau(tau)
    _as_thresholds(thresholds, x.dtype)  # validation: 1-D, finite, strictly increasing
    th = tuple(_static_float("thresholds", v) for v in thresholds)
    tau = _static_float("tau", tau)
    surrogate = rectangular(float(width)) if surrogate is None else get_surrogate(surrogate)
    if isinstance(block, bool) or not isinstance(block, int) or block < 1:
        raise ValueError(f"block must be a positive integer, got {block!r}")
    if interpret is None:
        interpret = jax.default_backend() == "cpu"
    shape = x.shape
    n = math.prod(shape[1:])
    if shape[0] == 0 or n == 0:
        return jnp.zeros_like(x)
    out = _mlf(
        x.reshape(shape[0], n), th, tau, surrogate, bool(detach_reset), block, bool(interpret)
    )
    return out.reshape(shape)
