"""Fused multi-step MLF: one ``jax.custom_vjp`` around the whole sequence.

Forward: a scan that returns the spike counts and keeps, as the only residuals,
the per-level membrane potentials ``u_k[t]`` (spikes and surrogate derivatives
are recomputed from them). Autodiff through :func:`mlf_jax.neurons.mlf` keeps
more per step (the potentials, the spikes, the reset factors and the arguments
of every surrogate).

Backward: a reverse scan with the BPTT recurrence derived by hand. Per level,
with ``g[t] = dL/do[t]`` (the same for every level, since ``o = sum_k o_k``),
``s[t] = surrogate.grad(u[t] - th)``, ``o[t] = H(u[t] - th)`` and
``delta[t] = dL/du[t]`` (total derivative), from
``u[t+1] = tau * u[t] * (1 - o[t]) + x[t+1]``::

    dL/do[t] (total) = g[t] - tau * u[t] * delta[t+1]        (reset path; 0 if detached)
    delta[t] = s[t] * dL/do[t] + tau * (1 - o[t]) * delta[t+1],   delta[T] = 0
    dL/dx[t] = sum_k delta_k[t]
    dL/dth_k = -sum_t s[t] * dL/do[t]                          (o[t] = H(u[t] - th_k))
    dL/dtau  = sum_k sum_t delta_k[t+1] * u_k[t] * (1 - o_k[t])

With ``detach_reset`` the reset term ``tau * u[t] * delta[t+1]`` is dropped
from ``dL/do[t]`` (the spike in the reset carries no gradient).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from mlf_jax.checks import as_thresholds, check_sequence_input, check_tau, is_concrete
from mlf_jax.shard_map_casts import vary_alike
from mlf_jax.surrogate import DEFAULT_SURROGATE, Surrogate, get_surrogate, heaviside
from mlf_jax.thresholds import DEFAULT_THRESHOLDS
from mlf_jax.unroll import auto_unroll

__all__ = ["mlf_fused"]

Array = jax.Array


def _forward(x: Array, th, tau, unroll) -> tuple[Array, tuple[Array, ...]]:
    """Spike counts ``[T, ...]`` and the potentials of each level (K arrays ``[T, ...]``);
    ``th`` and ``tau`` are arrays or (static) floats."""
    levels = len(th)

    def body(carry, xt):
        us, os = carry
        new_u = tuple(tau * us[k] * (1.0 - os[k]) + xt for k in range(levels))
        new_o = tuple(heaviside(new_u[k] - th[k]) for k in range(levels))
        return (new_u, new_o), (functools.reduce(jnp.add, new_o), new_u)

    rest = tuple(jnp.zeros_like(x[0]) for _ in range(levels))
    _, (out, us) = lax.scan(body, (rest, rest), x, unroll=unroll)
    return out, us


def _backward(us, g, th, tau, surrogate, detach_reset, unroll, with_params: bool):
    """``dL/dx`` (and, with ``with_params``, ``dL/dth`` and ``dL/dtau``) by the reverse
    recurrence of the module docstring. ``th`` and ``tau`` may be arrays or floats."""
    levels = len(us)

    def body(carry, inputs):
        deltas, dth, dtau = carry  # delta_k[t+1], running sums (elementwise)
        gt, ut = inputs
        new_deltas, new_dth, new_dtau = [], [], dtau
        for k in range(levels):
            z = ut[k] - th[k]
            s, o = surrogate.grad(z), heaviside(z)
            do = gt if detach_reset else gt - tau * ut[k] * deltas[k]
            new_deltas.append(s * do + tau * (1.0 - o) * deltas[k])
            if with_params:
                new_dth.append(dth[k] - s * do)
                new_dtau = new_dtau + deltas[k] * ut[k] * (1.0 - o)
        dx = functools.reduce(jnp.add, new_deltas)
        return (tuple(new_deltas), tuple(new_dth), new_dtau), dx

    zero = jnp.zeros_like(g[0])
    init = ((zero,) * levels, (zero,) * levels if with_params else (), zero if with_params else ())
    (_, dth, dtau), dx = lax.scan(body, init, (g, us), reverse=True, unroll=unroll)
    return dx, dth, dtau


@functools.partial(jax.custom_vjp, nondiff_argnums=(3, 4, 5))
def _mlf(x, th, tau, surrogate, detach_reset, unroll):
    return _forward(x, th, tau, unroll)[0]


def _mlf_fwd(x, th, tau, surrogate, detach_reset, unroll):
    out, us = _forward(x, th, tau, unroll)
    return out, (us, th, tau)


def _mlf_bwd(surrogate, detach_reset, unroll, residuals, g):
    us, th, tau = residuals
    dx, dth, dtau = _backward(us, g, th, tau, surrogate, detach_reset, unroll, True)
    dth = jnp.stack([d.sum() for d in dth]).astype(th.dtype)
    return dx, dth, dtau.sum().astype(tau.dtype)


_mlf.defvjp(_mlf_fwd, _mlf_bwd)


# Thresholds and tau known at trace time (Python floats, the usual case): they are
# static, so the backward pass carries and sums no parameter gradients (in the reverse
# scan these were 2 more carries and 4 more operations per level and step).
@functools.partial(jax.custom_vjp, nondiff_argnums=(1, 2, 3, 4, 5))
def _mlf_static(x, th, tau, surrogate, detach_reset, unroll):
    return _forward(x, th, tau, unroll)[0]


def _mlf_static_fwd(x, th, tau, surrogate, detach_reset, unroll):
    out, us = _forward(x, th, tau, unroll)
    return out, us


def _mlf_static_bwd(th, tau, surrogate, detach_reset, unroll, us, g):
    return (_backward(us, g, th, tau, surrogate, detach_reset, unroll, False)[0],)


_mlf_static.defvjp(_mlf_static_fwd, _mlf_static_bwd)


def mlf_fused(
    x: Array,
    *,
    thresholds: Sequence[float] | Array = DEFAULT_THRESHOLDS,
    tau: float | Array = 0.25,
    surrogate: Surrogate | str = DEFAULT_SURROGATE,
    detach_reset: bool = False,
    unroll: int | bool | None = None,
) -> Array:
    """:func:`mlf_jax.neurons.mlf` with a hand-written backward pass (same arguments).

    Returns spike counts ``[T, ...]``. Differentiable with respect to ``x``,
    ``thresholds`` and ``tau`` (see the module docstring for the recurrence).
    """
    x = check_sequence_input(x, "mlf_fused")
    surrogate = get_surrogate(surrogate)
    check_tau(tau)
    th = as_thresholds(thresholds, x.dtype)
    unroll = auto_unroll(x.shape[0], unroll)
    if is_concrete(thresholds) and is_concrete(tau):
        static_th = tuple(float(v) for v in np.asarray(thresholds, np.float64).reshape(-1))
        return _mlf_static(x, static_th, float(tau), surrogate, bool(detach_reset), unroll)
    tau = jnp.asarray(tau, x.dtype)
    x, th, tau = vary_alike(x, th, tau)
    return _mlf(x, th, tau, surrogate, bool(detach_reset), unroll)
