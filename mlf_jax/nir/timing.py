"""Our discrete leak against NIR's continuous time constants: the one place the mapping is
written (no ``nir`` import here).

The library's neurons are discrete: per step ``u[t] = tau u[t-1] (1 - o[t-1]) + x[t]``,
with ``tau`` the *leak factor* in ``[0, 1]`` (:mod:`mlf_jax.neurons`). NIR's ``LIF`` is
continuous, ``tau_nir dv/dt = (v_leak - v) + r I``. A runner steps it with a step ``dt``;
with the forward-Euler step (what snnTorch's importer does,
``beta = 1 - dt / tau_nir``)::

    v[t] = (1 - dt/tau_nir) v[t-1] + (dt/tau_nir) (v_leak + r I[t])

which is the library's step when ``v_leak = 0`` and

    tau_nir = dt / (1 - tau)        r = tau_nir / dt = 1 / (1 - tau)

(the input gain ``r dt / tau_nir`` is then 1). ``tau = 1`` (no leak) has no finite
``tau_nir``: it is NIR's ``IF``, ``dv/dt = r I``, stepped as ``v += dt r I``, so ``r = 1/dt``.
The reset is the same in both: NIR sets ``v`` to ``v_reset = 0`` when ``v > v_threshold``;
the library multiplies the leaked potential by ``1 - o[t-1]`` at the next step, which is the
same number, and fires on ``u > threshold`` (strictly) as NIR does.

The exact (zero-order-hold) discretisation, ``v[t] = exp(-dt/tau_nir) v[t-1] + ...``, maps
the same leak to another ``tau_nir`` (``-dt / log(tau)``); this package writes and reads the
Euler one; a reader that integrates exactly sees another leak, ``exp(tau - 1)`` per step
(``0.47`` for ``tau = 0.25``), which changes every step after the first.
"""

from __future__ import annotations

import numpy as np

__all__ = ["DEFAULT_DT", "leak_to_nir", "leak_from_nir", "if_to_nir", "if_from_nir"]

#: The step assumed when a graph does not say: 1e-4 s, the step snnTorch's importer assumes
#: (it reads every ``LIF`` as ``beta = 1 - 1e-4 / tau``).
DEFAULT_DT = 1e-4


def _check_dt(dt: float) -> float:
    try:
        step = float(dt)
    except (TypeError, ValueError):
        step = float("nan")
    if not np.isfinite(step) or step <= 0:
        raise ValueError(f"dt must be a positive step in seconds, got {dt!r}")
    return step


def leak_to_nir(tau: float, dt: float = DEFAULT_DT) -> tuple[float, float]:
    """``(tau_nir, r)`` of the NIR ``LIF`` (``v_leak = 0``) whose Euler step ``dt`` is the
    library's LIF step with leak factor ``tau`` in ``[0, 1)``.

    Raises:
      ValueError: ``tau`` outside ``[0, 1)`` (``tau = 1`` has no leak: :func:`if_to_nir`),
        or ``dt`` not positive.
    """
    dt = _check_dt(dt)
    tau = float(tau)
    if not 0.0 <= tau < 1.0:
        raise ValueError(
            f"a leak factor in [0, 1) has a NIR LIF time constant, got {tau!r} "
            "(1 is no leak: NIR's IF)"
        )
    tau_nir = dt / (1.0 - tau)
    return tau_nir, tau_nir / dt


def leak_from_nir(tau_nir, r, dt: float = DEFAULT_DT) -> tuple[np.ndarray, np.ndarray]:
    """``(tau, gain)``: the leak factor ``1 - dt / tau_nir`` and the input gain
    ``r dt / tau_nir`` of NIR's ``LIF`` stepped by Euler with ``dt`` (arrays, float64).

    Raises:
      ValueError: ``tau_nir < dt`` somewhere (the Euler step would flip the sign of ``v``:
        a leak factor below 0), or ``dt`` not positive.
    """
    dt = _check_dt(dt)
    tau_nir = np.asarray(tau_nir, np.float64)
    leak = 1.0 - dt / tau_nir
    if not np.all((leak >= 0) & (leak <= 1)):
        raise ValueError(
            f"a NIR LIF time constant below the step dt={dt} (min {tau_nir.min()!r}) has no "
            "leak factor in [0, 1] (the Euler step is unstable): read the graph with its dt"
        )
    return leak, np.asarray(r, np.float64) * dt / tau_nir


def if_to_nir(dt: float = DEFAULT_DT) -> float:
    """``r`` of the NIR ``IF`` whose Euler step ``dt`` adds the input once: ``1 / dt``."""
    return 1.0 / _check_dt(dt)


def if_from_nir(r, dt: float = DEFAULT_DT) -> np.ndarray:
    """The input gain ``r dt`` of NIR's ``IF`` stepped by Euler with ``dt`` (float64)."""
    return np.asarray(r, np.float64) * _check_dt(dt)
