"""Pure functions for LIF and multi-level firing (MLF) dynamics. No Flax here.

Iterative LIF (paper eqs. 1-3, hard reset to 0 after a spike; the equations and their
gradients: the method page, section [LIF and MLF dynamics][lif-and-mlf-dynamics])::

    u[t] = tau * u[t-1] * (1 - o[t-1]) + x[t]
    o[t] = H(u[t] - threshold)

An MLF unit is K such LIF membranes, all fed the same input, with thresholds
``V_th,1 < ... < V_th,K`` and their own resets; its output is the sum of the K
spike trains (an integer in ``0..K``). Here it is literally that: ``mlf_step``
applies ``lif_step`` once per threshold and sums the spikes.

The reset term goes through the surrogate gradient unless ``detach_reset=True``
(which applies ``stop_gradient`` to ``o[t-1]`` in the reset).

Time is axis 0 (time-major); any trailing shape is allowed. Everything works
under ``jit``, ``vmap``, ``grad`` and ``jax.checkpoint``; ``thresholds`` and
``tau`` may be traced (e.g. to differentiate with respect to them).

Input checks: shapes and dtypes are checked always, under ``jit`` too (a scalar
``tau``, 1-D ``thresholds``, at least one time step, a floating input). Values can be
checked only when they are concrete: under ``jit``, a traced ``tau`` outside ``[0, 1]``
or traced thresholds that are not finite and strictly increasing are not caught. Check
such values before tracing them, or learn them through a parametrisation that keeps them
valid (:mod:`mlf_jax.reparam`, as :func:`mlf_jax.nn.MLF` does).
"""

from __future__ import annotations

import functools
import operator
from collections.abc import Sequence
from typing import Any, NamedTuple, cast

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from mlf_jax.checks import as_thresholds, check_sequence_input, check_tau, is_concrete
from mlf_jax.surrogate import DEFAULT_SURROGATE, Surrogate, get_surrogate, spike
from mlf_jax.thresholds import DEFAULT_THRESHOLDS, default_thresholds
from mlf_jax.unroll import MAX_UNROLLED_STEPS, auto_unroll

__all__ = [
    "LIFState",
    "lif_init",
    "lif_step",
    "lif",
    "MLFState",
    "mlf_init",
    "mlf_step",
    "mlf",
    "default_thresholds",
    "DEFAULT_THRESHOLDS",
    "auto_unroll",
    "MAX_UNROLLED_STEPS",
    "NEURON_IMPLS",
    "auto_impl",
]

Array = jax.Array
ArrayLike = jax.typing.ArrayLike


class LIFState(NamedTuple):
    """State carried between time steps: membrane potential and last spikes."""

    u: Array
    o: Array


def _pallas_fallback(impl: str, time_steps: int, *params) -> str:
    """``impl``, or for ``'pallas'`` with a traced threshold or leak (learned, under
    ``grad`` or ``jit``) what ``'auto'`` picks for ``time_steps``: the Pallas kernels bake
    these in as constants and give them no gradient; the scan and the fused kernel do."""
    return auto_impl(time_steps) if impl == "pallas" and not is_concrete(params) else impl


# ---------------------------------------------------------------------------
# LIF
# ---------------------------------------------------------------------------


def lif_init(shape: Sequence[int] | int | Array, dtype=None) -> LIFState:
    """Resting state ``u[-1] = 0, o[-1] = 0`` for a layer of the given shape.

    ``shape`` is a shape, or an array shaped like one input step (a template, as
    :func:`mlf_jax.zoo.sequence` passes ``x[0]``): the state then has its shape and, unless
    ``dtype`` is given, its dtype. ``dtype`` defaults to float32 for a shape.
    """
    if hasattr(shape, "shape") and hasattr(shape, "dtype"):
        zeros = jnp.zeros_like(shape, dtype=dtype)
    else:
        zeros = jnp.zeros(shape, jnp.float32 if dtype is None else dtype)
    return LIFState(zeros, zeros)


def _check_lif_state(state: Any, x: Array, name: str) -> None:
    """One :class:`LIFState` shaped like the input step ``x`` (shapes are static: checked
    under ``jit`` too); broadcasting a state of another shape would silently change the
    layer's size."""
    if not isinstance(state, LIFState):
        got = (
            "an MLF state (a tuple of LIFStates, from mlf_init)"
            if isinstance(state, tuple) and all(isinstance(s, LIFState) for s in state)
            else type(state).__name__
        )
        raise TypeError(f"{name} takes a LIFState (from lif_init), got {got}")
    if jnp.shape(state.u) != jnp.shape(x):
        raise ValueError(
            f"{name}: the state has shape {jnp.shape(state.u)} but the input step has shape "
            f"{jnp.shape(x)}: build the state with lif_init(x_step) (one per input shape)"
        )


#: How :func:`mlf` and :func:`lif` compute the dynamics (see :func:`auto_impl`).
NEURON_IMPLS = ("auto", "scan", "fused", "pallas")


def check_impl(impl: str) -> str:
    """``impl`` if it is one of :data:`NEURON_IMPLS`, else a ``ValueError`` naming them."""
    if impl not in NEURON_IMPLS:
        raise ValueError(f"unknown impl {impl!r}; expected one of {NEURON_IMPLS}")
    return impl


def auto_impl(time_steps: int, backend: str | None = None) -> str:
    """The implementation ``impl='auto'`` picks for an MLF sequence of ``time_steps``.

    * ``'scan'`` up to :data:`MAX_UNROLLED_STEPS` steps (unrolled completely), and
      ``'fused'`` beyond, where the fused kernel (hand-written BPTT in a reverse scan)
      is faster and lighter than autodiff through a rolled scan (figures: the
      benchmarks guide, section [Neuron layer][bench-neuron-layer]).
    * GPU and TPU (``backend``, default ``jax.default_backend()`` at trace time): the
      same rule, chosen on CPU. The Pallas kernel (``'pallas'``) has not run on a GPU or
      TPU, so ``'auto'`` does not pick it; the scan and the fused kernel are plain XLA
      and give the same numbers on every backend.
    """
    backend = jax.default_backend() if backend is None else backend
    longest_scan = _AUTO_LONGEST_SCAN.get(backend, MAX_UNROLLED_STEPS)
    return "scan" if time_steps <= longest_scan else "fused"


#: Per backend, the longest sequence ``impl='auto'`` computes with the scan (the
#: fused kernel beyond). The values were chosen on CPU (see :func:`auto_impl`).
_AUTO_LONGEST_SCAN = {
    "cpu": MAX_UNROLLED_STEPS,
    "gpu": MAX_UNROLLED_STEPS,
    "tpu": MAX_UNROLLED_STEPS,
}


def _rest_like(x0: Array) -> LIFState:
    """Resting state shaped like one input step. ``zeros_like`` (not ``zeros``) keeps
    the input's sharding type, so the scan carry matches inside ``shard_map``."""
    return LIFState(jnp.zeros_like(x0), jnp.zeros_like(x0))


def lif_step(
    state: LIFState,
    x: Array,
    *,
    threshold: ArrayLike = 0.6,
    tau: ArrayLike = 0.25,
    surrogate: Surrogate = DEFAULT_SURROGATE,
    detach_reset: bool = False,
) -> tuple[LIFState, Array]:
    """One LIF time step: ``(state[t-1], x[t]) -> (state[t], o[t])``.

    Raises:
      TypeError: ``state`` is not a :class:`LIFState` (an MLF state, say).
      ValueError: the state's shape is not the input step's.
    """
    _check_lif_state(state, x, "lif_step")
    o_prev = lax.stop_gradient(state.o) if detach_reset else state.o
    u = cast(Array, tau * state.u * (1.0 - o_prev) + x)
    o = spike(u - threshold, surrogate)
    return LIFState(u, o), o


def _lif_threshold(threshold, step_shape: tuple[int, ...]):
    """``threshold`` as a number or an array that broadcasts to one step's shape.

    Raises:
      ValueError: naming both shapes when it does not (several thresholds, one per level,
        are :func:`mlf`'s).
    """
    if isinstance(threshold, (list, tuple)):
        threshold = jnp.asarray(threshold)
    shape = np.shape(threshold)
    try:
        fits = np.broadcast_shapes(shape, step_shape) == tuple(step_shape)
    except ValueError:
        fits = False
    if not fits:
        raise ValueError(
            f"lif's threshold must be a number or broadcast to one step's shape {step_shape} "
            f"(one per unit), got shape {shape}; for several thresholds (levels) use mlf"
        )
    return threshold


def lif(
    x: Array,
    *,
    threshold: ArrayLike = 0.6,
    tau: ArrayLike = 0.25,
    surrogate: Surrogate | str = DEFAULT_SURROGATE,
    detach_reset: bool = False,
    unroll: int | bool | None = None,
    return_potential: bool = False,
    impl: str = "auto",
) -> Array | tuple[Array, Array]:
    """LIF neuron over time (axis 0) with ``lax.scan``.

    Args:
      x: input current ``[T, ...]``.
      threshold: firing threshold: a number, or an array that broadcasts to one step's
        shape (one per unit, computed with the scan); may be traced, e.g. learned.
      tau: leak factor in ``[0, 1]`` (may be traced; a traced value is not checked: see
        the module's notes on ``jit``).
      surrogate: surrogate gradient of the step function.
      detach_reset: stop the gradient through the reset term.
      unroll: passed to ``lax.scan``; ``None`` chooses by T (see :func:`auto_unroll`).
      return_potential: also return the membrane potentials ``u`` (``[T, ...]``);
        always computed with the scan.
      impl: one of :data:`NEURON_IMPLS`: ``'scan'``, ``'fused'`` or ``'pallas'`` (the
        one-level MLF kernels, see :func:`mlf`); ``'auto'`` picks as :func:`mlf` does
        (:func:`auto_impl`; an explicit ``unroll`` selects the scan).

    Returns:
      Spikes ``[T, ...]`` in ``{0, 1}`` (and ``u`` if requested).
    """
    x = check_sequence_input(x, "lif")
    surrogate = get_surrogate(surrogate)
    check_tau(tau)
    threshold = _lif_threshold(threshold, x.shape[1:])
    if check_impl(impl) == "auto":
        impl = auto_impl(x.shape[0]) if unroll is None else "scan"
    impl = _pallas_fallback(impl, x.shape[0], threshold, tau)
    if np.ndim(threshold) != 0:
        impl = "scan"  # the kernels take one threshold per level, not one per unit
    if impl in ("fused", "pallas") and not return_potential:
        # a static threshold stays a Python tuple: the fused kernel then skips the
        # threshold and tau gradients (jnp.reshape would make it a tracer under jit)
        static = impl == "pallas" or (is_concrete(threshold) and np.ndim(threshold) == 0)
        th = (threshold,) if static else jnp.reshape(jnp.asarray(threshold), (1,))
        return _mlf_kernel(impl, x, th, tau, surrogate, detach_reset, unroll)
    step = functools.partial(
        lif_step, threshold=threshold, tau=tau, surrogate=surrogate, detach_reset=detach_reset
    )

    def body(state, xt):
        state, o = step(state, xt)
        return state, (o, state.u) if return_potential else o

    _, out = lax.scan(body, _rest_like(x[0]), x, unroll=auto_unroll(x.shape[0], unroll))
    return out


# ---------------------------------------------------------------------------
# MLF
# ---------------------------------------------------------------------------


#: State of an MLF unit: one :class:`LIFState` per level.
MLFState = tuple[LIFState, ...]


def mlf_init(shape: Sequence[int] | int | Array, levels: int, dtype=None) -> MLFState:
    """Resting state of K levels: a tuple of K :class:`LIFState` of the given shape (or
    shaped like the template array ``shape``, as in :func:`lif_init`)."""
    return tuple(lif_init(shape, dtype) for _ in range(levels))


def mlf_step(
    state: MLFState,
    x: Array,
    *,
    thresholds: Sequence[float] | ArrayLike = DEFAULT_THRESHOLDS,
    tau: ArrayLike = 0.25,
    surrogate: Surrogate = DEFAULT_SURROGATE,
    detach_reset: bool = False,
) -> tuple[MLFState, Array]:
    """One MLF time step: one :func:`lif_step` per level, spikes summed.

    ``state`` holds one :class:`LIFState` per level (see :func:`mlf_init`).
    Returns ``(state[t], o[t])`` with ``o[t] = sum_k o_k[t]`` in ``0..K``.

    Mathematically this is ``jax.vmap(lif_step)`` over the thresholds followed
    by a sum over levels. The levels are kept as separate arrays because
    XLA:CPU handles a stacked ``[K, ...]`` layout poorly: the sum over levels,
    and the stacking and broadcasting in the backward pass, become slow
    leading-axis copies and reductions, while separate levels fuse into one
    elementwise loop (figures: the benchmarks guide, section
    [Level layout][bench-level-layout]).
    """
    th = as_thresholds(thresholds, jnp.result_type(x))
    if isinstance(state, LIFState):
        raise TypeError(
            "mlf_step takes an MLF state, a tuple of K LIFStates (mlf_init(shape, levels=K)), "
            "got one LIFState (from lif_init)"
        )
    if len(state) != th.shape[0]:
        raise ValueError(f"state has {len(state)} levels but there are {th.shape[0]} thresholds")
    step = functools.partial(lif_step, tau=tau, surrogate=surrogate, detach_reset=detach_reset)
    new_state, spikes = zip(
        *(step(s, x, threshold=th[k]) for k, s in enumerate(state)), strict=True
    )
    return tuple(new_state), functools.reduce(operator.add, spikes)


def mlf(
    x: Array,
    *,
    thresholds: Sequence[float] | ArrayLike = DEFAULT_THRESHOLDS,
    tau: ArrayLike = 0.25,
    surrogate: Surrogate | str = DEFAULT_SURROGATE,
    detach_reset: bool = False,
    unroll: int | bool | None = None,
    return_potential: bool = False,
    impl: str = "auto",
) -> Array | tuple[Array, Array]:
    """Multi-level firing neuron over time (axis 0).

    Args:
      x: input current ``[T, ...]``.
      thresholds: ``K`` strictly increasing thresholds, one per level
        (default :data:`mlf_jax.thresholds.DEFAULT_THRESHOLDS`: ``V_th,1 = 0.6``, spacing
        = surrogate width 1). Checked when concrete; under ``jit`` traced thresholds are not
        (see the module's notes).
      tau: leak factor in ``[0, 1]`` (likewise checked only when concrete).
      surrogate: surrogate gradient, shared by all levels.
      detach_reset: stop the gradient through the reset term.
      unroll: passed to ``lax.scan`` (``'scan'``, ``'fused'``); ``None`` chooses by T
        (see :func:`auto_unroll`).
      return_potential: also return the per-level potentials ``u`` (``[T, K, ...]``);
        always computed with the scan (the kernels keep no potentials to return).
      impl: how the dynamics are computed, one of :data:`NEURON_IMPLS`; all give the
        same spikes and input gradients.

        * ``'scan'``: ``lax.scan`` over :func:`mlf_step`, differentiated by autodiff.
        * ``'fused'``: :func:`mlf_jax.kernels.fused.mlf_fused` (a scan with a
          hand-written backward pass).
        * ``'pallas'``: :func:`mlf_jax.kernels.pallas_mlf.mlf_pallas` (Pallas kernels
          that loop over time inside, compiled on GPU/TPU, interpret mode on CPU: slow
          but exact). They bake ``thresholds`` and ``tau`` in as constants, so when
          either is traced (learned: under ``grad`` or ``jit``) ``'pallas'`` computes
          with what ``'auto'`` picks instead, which gives them their gradients.
        * ``'auto'`` (default): ``'scan'`` or ``'fused'`` by T and backend, see
          :func:`auto_impl`; ``unroll=None`` keeps this choice, an explicit ``unroll``
          selects the scan (as before ``impl`` existed).

    Returns:
      Spike counts ``[T, ...]`` in ``0..K`` (and ``u`` if requested).
    """
    x = check_sequence_input(x, "mlf")
    surrogate = get_surrogate(surrogate)
    check_tau(tau)
    th = as_thresholds(thresholds, x.dtype)
    if check_impl(impl) == "auto":
        impl = auto_impl(x.shape[0]) if unroll is None else "scan"
    impl = _pallas_fallback(impl, x.shape[0], thresholds, tau)
    if impl != "scan" and not return_potential:
        th_arg = thresholds if impl == "pallas" or is_concrete(thresholds) else th
        return _mlf_kernel(impl, x, th_arg, tau, surrogate, detach_reset, unroll)
    step = functools.partial(
        mlf_step, thresholds=th, tau=tau, surrogate=surrogate, detach_reset=detach_reset
    )

    def body(state, xt):
        state, o = step(state, xt)
        return state, (o, jnp.stack([s.u for s in state])) if return_potential else o

    init = tuple(_rest_like(x[0]) for _ in range(th.shape[0]))
    _, out = lax.scan(body, init, x, unroll=auto_unroll(x.shape[0], unroll))
    return out


def _mlf_kernel(impl, x, thresholds, tau, surrogate, detach_reset, unroll) -> Array:
    """Spike counts from the fused (``unroll`` passed on) or the Pallas kernel."""
    if impl == "fused":
        from mlf_jax.kernels.fused import mlf_fused

        return mlf_fused(
            x,
            thresholds=thresholds,
            tau=tau,
            surrogate=surrogate,
            detach_reset=detach_reset,
            unroll=unroll,
        )
    from mlf_jax.kernels.pallas_mlf import mlf_pallas

    return mlf_pallas(
        x, thresholds=thresholds, tau=tau, surrogate=surrogate, detach_reset=detach_reset
    )
