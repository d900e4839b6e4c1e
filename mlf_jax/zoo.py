"""A small zoo of spiking neurons built on one generic wrapper. Pure functions, no Flax.

**The wrapper.** A neuron is a pure step function ``step(state, x_t, params) -> (state,
out_t)`` and an ``init(x0) -> state`` that builds the resting state from a template input
step ``x0`` (an array shaped like one time step). :func:`sequence` turns the pair into a
function of a time-major input ``[T, ...]``, via ``lax.scan``. ``init`` takes a template
array rather than a shape so that the state can be built with ``zeros_like``, which keeps
the input's dtype and its sharding type (a scan carry must match them inside
``shard_map``).

**The zoo.** Each neuron is a frozen (hashable) dataclass, like the surrogate families: its
fields are the static settings and the initial values of its parameters;
:meth:`NeuronModel.params` gives the parameters as a dict (the numbers that may be traced,
differentiated or learned), and calling the model runs it over time. Every neuron resets
hard to 0 after a spike through the multiplicative reset of :mod:`mlf_jax.neurons`, with
the surrogate gradient through the reset unless ``detach_reset``:

* :class:`IF`: integrate and fire, no leak: ``u[t] = u[t-1] (1 - o[t-1]) + x[t]``,
  ``o[t] = H(u[t] - V_th)``.
* :class:`LIF`: ``u[t] = tau u[t-1] (1 - o[t-1]) + x[t]``; the numbers of
  :func:`mlf_jax.neurons.lif`.
* :class:`MLF`: K LIF levels with thresholds ``V_th,1 < ... < V_th,K``, spikes summed; the
  numbers of :func:`mlf_jax.neurons.mlf` (computed with the scan).
* :class:`AdaptiveLIF`: a LIF whose threshold rises by ``beta`` after each spike, the rise
  decaying by ``rho`` per step: ``b[t] = rho b[t-1] + beta o[t-1]``,
  ``o[t] = H(u[t] - V_th - b[t])``, ``u`` as in LIF (spike-frequency adaptation).
* :class:`PLIF`: the parametric LIF, :class:`LIF` with ``learn_tau=True``: ``tau =
  sigmoid(w)`` with ``w`` the parameter ``'tau_logit'`` (learned by default in
  :class:`mlf_jax.nn.Neuron`). Fang et al. (ICCV 2021) learn ``sigmoid(w)`` as the charging
  rate of ``u += (x - u) sigmoid(w)``; here it is the decay factor of the paper's iterative
  form, which keeps the LIF's other conventions. :class:`MLF` learns its leak the same way,
  and its thresholds through :mod:`mlf_jax.reparam` (``learn_thresholds``).

:class:`LIF` and :class:`MLF` run their sequences with the kernel their ``impl`` names (as
:func:`mlf_jax.neurons.lif` and :func:`mlf_jax.neurons.mlf`); the others with the scan.

Each model also defines :meth:`NeuronModel.potential`, the per-level potentials ``[K, ...]``
whose distance to the level's base threshold is what the surrogate sees (what
:class:`mlf_jax.nn.Neuron` records for :mod:`mlf_jax.analysis`).
"""

from __future__ import annotations

import dataclasses
import numbers
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from mlf_jax import neurons
from mlf_jax.checks import check_sequence_input, check_thresholds
from mlf_jax.neurons import LIFState, auto_unroll
from mlf_jax.reparam import (
    leak_from_logit,
    logit_of_leak,
    raw_of_thresholds,
    thresholds_from_raw,
)
from mlf_jax.surrogate import Surrogate, get_surrogate, rectangular

__all__ = [
    "StepFn",
    "InitFn",
    "sequence",
    "NeuronModel",
    "IF",
    "LIF",
    "MLF",
    "AdaptiveLIF",
    "ALIFState",
    "PLIF",
    "ZOO",
]

Array = jax.Array
Params = Mapping[str, Any]
State = Any
StepFn = Callable[[State, Array, Params], tuple[State, Array]]
InitFn = Callable[[Array], State]


def sequence(
    step: StepFn,
    init: InitFn,
    *,
    unroll: int | bool | None = None,
    return_states: bool = False,
) -> Callable[..., Array | tuple[Array, State]]:
    """The sequence function ``f(x, params=None)`` of a step function, over time axis 0.

    ``f(x, params)`` runs ``state = init(x[0])`` and then, for ``t = 0..T-1``,
    ``state, out[t] = step(state, x[t], params)`` with ``lax.scan``; it returns the outputs
    stacked on a leading time axis (any pytree ``step`` returns), and with
    ``return_states`` also the state after every step (the same pytree as ``init`` gives,
    each leaf with a leading T axis).

    Args:
      step: ``(state, x_t, params) -> (state, out_t)``, pure.
      init: ``x0 -> state``, the resting state for input steps like ``x0``.
      unroll: passed to ``lax.scan``; ``None`` chooses by T (see
        :func:`mlf_jax.neurons.auto_unroll`).
      return_states: also return the states.

    The returned function checks that ``x`` is a floating array of rank >= 1 and works
    under ``jit``, ``vmap``, ``grad`` and ``jax.checkpoint``; ``params`` may be traced.
    """
    if not callable(step) or not callable(init):
        raise TypeError(
            f"sequence needs callable step and init, got {type(step).__name__} and "
            f"{type(init).__name__}"
        )

    def run(x: Array, params: Params | None = None) -> Array | tuple[Array, State]:
        x = check_sequence_input(x, "sequence")

        def body(state, xt):
            state, out = step(state, xt, params)
            return state, (out, state) if return_states else out

        _, ys = lax.scan(body, init(x[0]), x, unroll=auto_unroll(x.shape[0], unroll))
        return ys

    return run


def _float(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a Python number, got {value!r} ({type(value).__name__})")
    return float(value)


def _in_unit_interval(name: str, value: Any, *, open_low: bool = False) -> float:
    v = _float(name, value)
    if not ((0.0 < v) if open_low else (0.0 <= v)) or not v <= 1.0:
        lo = "(0" if open_low else "[0"
        raise ValueError(f"{name} must be in {lo}, 1], got {value!r}")
    return v


class NeuronModel:
    """Base of the zoo: a step function, a resting state, parameters and a name.

    Subclasses define :meth:`params`, :meth:`init`, :meth:`step`, :meth:`potential` and
    :meth:`level_thresholds`; :attr:`learned` names the parameters :class:`mlf_jax.nn.Neuron`
    learns by default. :meth:`run` is the sequence over time; a model with a faster
    kernel for it (:class:`MLF` and :class:`LIF`, by their field ``impl``) overrides it.
    """

    @property
    def learned(self) -> tuple[str, ...]:
        """Parameters that :class:`mlf_jax.nn.Neuron` makes learnable unless told otherwise."""
        return ()

    def _undefined(self, method: str, what: str) -> NotImplementedError:
        return NotImplementedError(
            f"{type(self).__name__} does not define {method}, {what}: define it in the "
            "subclass (see mlf_jax.zoo.NeuronModel)"
        )

    def params(self) -> dict[str, Any]:
        """The parameters' initial values (Python floats or tuples of floats)."""
        raise self._undefined("params()", "its parameters' initial values")

    def init(self, x0: Array) -> State:
        """The resting state for input steps shaped like ``x0``."""
        raise self._undefined("init(x0)", "the resting state")

    def step(self, state: State, x: Array, params: Params) -> tuple[State, Array]:
        """One time step: ``(state[t-1], x[t], params) -> (state[t], o[t])``."""
        raise self._undefined("step(state, x, params)", "one time step")

    def potential(self, state: State) -> Array:
        """Per-level potentials ``[K, ...]`` minus any adaptation (see the module docs)."""
        raise self._undefined(
            "potential(state)",
            "the per-level potentials [K, ...] that recording for analysis needs",
        )

    def level_thresholds(self, params: Params | None = None) -> Any:
        """The K thresholds the surrogate is centred on, against :meth:`potential` (what a
        dormant-unit analysis needs), for ``params`` (default: :meth:`params`)."""
        raise self._undefined(
            "level_thresholds()", "the thresholds that the dormant-unit analysis needs"
        )

    def run(
        self,
        x: Array,
        params: Params,
        *,
        unroll: int | bool | None = None,
        return_states: bool = False,
    ) -> Array | tuple[Array, State]:
        """The model over ``x`` ``[T, ...]`` with all of its ``params``: :func:`sequence`
        of :meth:`step` and :meth:`init`."""
        return sequence(self.step, self.init, unroll=unroll, return_states=return_states)(x, params)

    def __call__(
        self,
        x: Array,
        params: Params | None = None,
        *,
        unroll: int | bool | None = None,
        return_states: bool = False,
    ) -> Array | tuple[Array, State]:
        """Runs the neuron over ``x`` ``[T, ...]``: spikes ``[T, ...]`` (and the states).

        ``params`` overrides some or all of :meth:`params` (e.g. traced values to
        differentiate); unknown names are an error.
        """
        return self.run(x, self.merge_params(params), unroll=unroll, return_states=return_states)

    def with_params(self, params: Params | None) -> NeuronModel:
        """This model with ``params`` (some or all of :meth:`params`, e.g. a Flax layer's
        learned values) as its settings, learning nothing: what the layer computes with, as
        a model whose :meth:`level_thresholds` and fields can be read and that runs without
        parameters. A learned leak ``'tau_logit'`` becomes ``tau``, learned thresholds
        ``'thresholds_raw'`` become ``thresholds``; every other parameter sets the field of
        its name. ``params`` must be concrete (outside ``jit``).

        Raises:
          KeyError: ``params`` names a parameter the model does not have.
          NotImplementedError: a model that is not a dataclass, or has a parameter that is
            not a field of its name (define ``with_params`` for it).
        """
        merged = self.merge_params(params)
        if not dataclasses.is_dataclass(self):
            raise NotImplementedError(
                f"{type(self).__name__} is not a dataclass: define its with_params()"
            )
        fields = {f.name for f in dataclasses.fields(self)}
        changes: dict[str, Any] = {}
        for name, value in merged.items():
            if name == "tau_logit":
                changes.update(tau=float(leak_from_logit(np.asarray(value))), learn_tau=False)
            elif name == "thresholds_raw":
                decoded = np.asarray(thresholds_from_raw(np.asarray(value)))
                changes.update(thresholds=tuple(map(float, decoded)), learn_thresholds=False)
            elif name in fields:
                array = np.asarray(value, np.float64)
                changes[name] = float(array) if array.ndim == 0 else tuple(map(float, array))
            else:
                raise NotImplementedError(
                    f"{type(self).__name__}'s parameter {name!r} is not a field of that name: "
                    "define its with_params()"
                )
        return dataclasses.replace(self, **changes)

    def merge_params(self, params: Params | None) -> dict[str, Any]:
        """:meth:`params` updated with ``params``.

        Raises:
          KeyError: ``params`` names a parameter the model does not have.
        """
        merged = self.params()
        if params:
            if unknown := sorted(set(params) - set(merged)):
                raise KeyError(
                    f"{type(self).__name__} has no parameter {', '.join(map(repr, unknown))}; "
                    f"its parameters are {sorted(merged)}"
                )
            merged.update(params)
        return merged


def _surrogate_field(model: Any) -> None:
    object.__setattr__(model, "surrogate", get_surrogate(model.surrogate))


def _check_leak(name: str, tau: Any, learn: bool) -> None:
    """A leak in ``[0, 1]``; a learned one strictly inside (its logit is its parameter)."""
    v = _float(name, tau)
    if learn and not 0.0 < v < 1.0:
        raise ValueError(
            f"{name} must be strictly between 0 and 1 when learned (its logit is the "
            f"parameter), got {tau!r}"
        )
    _in_unit_interval(name, v)


def _leak_params(tau: float, learn: bool) -> dict[str, float]:
    """``{'tau': tau}``, or ``{'tau_logit': logit(tau)}`` for a learned leak."""
    return {"tau_logit": float(logit_of_leak(tau))} if learn else {"tau": float(tau)}


def _leak(params: Params, x: Array) -> Any:
    """The leak ``params`` give: ``tau``, or ``sigmoid(tau_logit)`` in ``x``'s dtype (a scan
    carry keeps the input's dtype)."""
    if "tau_logit" in params:
        return leak_from_logit(jnp.asarray(params["tau_logit"], x.dtype))
    return params["tau"]


@dataclasses.dataclass(frozen=True)
class LIF(NeuronModel):
    """Leaky integrate and fire; parameters ``'threshold'`` and ``'tau'`` (``'tau_logit'``,
    ``tau = sigmoid(tau_logit)``, learned by default, with ``learn_tau``).

    ``impl`` computes the sequence as :func:`mlf_jax.neurons.lif` does (``'auto'``,
    ``'scan'``, ``'fused'``, ``'pallas'``; the same numbers).
    """

    threshold: float = 0.6
    tau: float = 0.25
    surrogate: Surrogate | str = rectangular(1.0)
    detach_reset: bool = False
    learn_tau: bool = False
    impl: str = "auto"

    def __post_init__(self):
        _float(f"{type(self).__name__} threshold", self.threshold)
        _check_leak(f"{type(self).__name__} tau", self.tau, self.learn_tau)
        neurons.check_impl(self.impl)
        _surrogate_field(self)

    @property
    def learned(self) -> tuple[str, ...]:
        return ("tau_logit",) if self.learn_tau else ()

    def params(self) -> dict[str, Any]:
        return {"threshold": float(self.threshold), **_leak_params(self.tau, self.learn_tau)}

    def init(self, x0: Array) -> LIFState:
        return LIFState(jnp.zeros_like(x0), jnp.zeros_like(x0))

    def step(self, state: LIFState, x: Array, params: Params) -> tuple[LIFState, Array]:
        return neurons.lif_step(
            state,
            x,
            threshold=params["threshold"],
            tau=_leak(params, x),
            surrogate=get_surrogate(self.surrogate),
            detach_reset=self.detach_reset,
        )

    def potential(self, state: LIFState) -> Array:
        return state.u[None]

    def level_thresholds(self, params: Params | None = None) -> Any:
        return (self.merge_params(params)["threshold"],)

    def run(self, x, params, *, unroll=None, return_states=False):
        if return_states:
            return super().run(x, params, unroll=unroll, return_states=True)
        x = check_sequence_input(x, "LIF")
        return neurons.lif(
            x,
            threshold=params["threshold"],
            tau=_leak(params, x),
            surrogate=self.surrogate,
            detach_reset=self.detach_reset,
            unroll=unroll,
            impl=self.impl,
        )


@dataclasses.dataclass(frozen=True)
class IF(NeuronModel):
    """Integrate and fire (no leak: LIF with ``tau = 1``); parameter ``'threshold'``."""

    threshold: float = 0.6
    surrogate: Surrogate | str = rectangular(1.0)
    detach_reset: bool = False

    def __post_init__(self):
        _float("IF threshold", self.threshold)
        _surrogate_field(self)

    def params(self) -> dict[str, Any]:
        return {"threshold": float(self.threshold)}

    def init(self, x0: Array) -> LIFState:
        return LIFState(jnp.zeros_like(x0), jnp.zeros_like(x0))

    def step(self, state: LIFState, x: Array, params: Params) -> tuple[LIFState, Array]:
        return neurons.lif_step(
            state,
            x,
            threshold=params["threshold"],
            tau=1.0,
            surrogate=get_surrogate(self.surrogate),
            detach_reset=self.detach_reset,
        )

    def potential(self, state: LIFState) -> Array:
        return state.u[None]

    def level_thresholds(self, params: Params | None = None) -> Any:
        return (self.merge_params(params)["threshold"],)


@dataclasses.dataclass(frozen=True)
class MLF(NeuronModel):
    """Multi-level firing: K LIF levels, spikes summed; parameters ``'thresholds'`` and
    ``'tau'``.

    Learned leak and thresholds (off by default) go through :mod:`mlf_jax.reparam`:
    ``learn_tau`` makes the parameter ``'tau_logit'`` (``tau = sigmoid(tau_logit)``) of
    ``'tau'``, ``learn_thresholds`` makes ``'thresholds_raw'`` (a first threshold and
    positive gaps) of ``'thresholds'``; both are then in ``learned``. ``impl`` computes
    the sequence as :func:`mlf_jax.neurons.mlf` does (``'auto'``, ``'scan'``, ``'fused'``,
    ``'pallas'``; the same numbers).
    """

    thresholds: Sequence[float] = neurons.DEFAULT_THRESHOLDS
    tau: float = 0.25
    surrogate: Surrogate | str = rectangular(1.0)
    detach_reset: bool = False
    learn_tau: bool = False
    learn_thresholds: bool = False
    impl: str = "auto"

    def __post_init__(self):
        check_thresholds(self.thresholds)  # 1-D, finite, increasing
        object.__setattr__(self, "thresholds", tuple(float(v) for v in self.thresholds))
        if self.learn_thresholds:
            raw_of_thresholds(self.thresholds)  # positive too
        _check_leak("MLF tau", self.tau, self.learn_tau)
        neurons.check_impl(self.impl)
        _surrogate_field(self)

    @property
    def learned(self) -> tuple[str, ...]:
        return ("tau_logit",) * self.learn_tau + ("thresholds_raw",) * self.learn_thresholds

    def params(self) -> dict[str, Any]:
        if self.learn_thresholds:
            levels: dict[str, Any] = {"thresholds_raw": raw_of_thresholds(self.thresholds)}
        else:
            levels = {"thresholds": tuple(self.thresholds)}
        return {**levels, **_leak_params(self.tau, self.learn_tau)}

    def constants(self, params: Params, x: Array | None = None) -> tuple[Any, Any]:
        """``(thresholds, tau)`` that ``params`` give (decoded where learned; a learned
        leak in ``x``'s dtype when ``x`` is given)."""
        if "thresholds_raw" in params:
            thresholds = thresholds_from_raw(params["thresholds_raw"])
        else:
            thresholds = params["thresholds"]
        if "tau_logit" in params:
            logit = params["tau_logit"] if x is None else jnp.asarray(params["tau_logit"], x.dtype)
            return thresholds, leak_from_logit(logit)
        return thresholds, params["tau"]

    def init(self, x0: Array) -> neurons.MLFState:
        return tuple(LIFState(jnp.zeros_like(x0), jnp.zeros_like(x0)) for _ in self.thresholds)

    def step(
        self, state: neurons.MLFState, x: Array, params: Params
    ) -> tuple[neurons.MLFState, Array]:
        thresholds, tau = self.constants(params, x)
        return neurons.mlf_step(
            state,
            x,
            thresholds=thresholds,
            tau=tau,
            surrogate=get_surrogate(self.surrogate),
            detach_reset=self.detach_reset,
        )

    def potential(self, state: neurons.MLFState) -> Array:
        return jnp.stack([s.u for s in state])

    def level_thresholds(self, params: Params | None = None) -> Any:
        return self.constants(self.merge_params(params))[0]

    def run(self, x, params, *, unroll=None, return_states=False):
        if return_states:
            return super().run(x, params, unroll=unroll, return_states=True)
        x = check_sequence_input(x, "MLF")
        thresholds, tau = self.constants(params, x)
        return neurons.mlf(
            x,
            thresholds=thresholds,
            tau=tau,
            surrogate=self.surrogate,
            detach_reset=self.detach_reset,
            unroll=unroll,
            impl=self.impl,
        )


class ALIFState(NamedTuple):
    """Adaptive LIF state: potential, last spikes, threshold rise ``b``."""

    u: Array
    o: Array
    b: Array


@dataclasses.dataclass(frozen=True)
class AdaptiveLIF(NeuronModel):
    """LIF with threshold adaptation; parameters ``'threshold'``, ``'tau'``, ``'rho'``,
    ``'beta'``.

    ``b[t] = rho b[t-1] + beta o[t-1]`` (``b[-1] = 0``), ``o[t] = H(u[t] - V_th - b[t])``; the
    surrogate gradient flows through ``b`` too (``detach_reset`` stops it only in the reset).
    """

    threshold: float = 0.6
    tau: float = 0.25
    rho: float = 0.8
    beta: float = 0.5
    surrogate: Surrogate | str = rectangular(1.0)
    detach_reset: bool = False

    def __post_init__(self):
        _float("AdaptiveLIF threshold", self.threshold)
        _in_unit_interval("AdaptiveLIF tau", self.tau)
        _in_unit_interval("AdaptiveLIF rho", self.rho)
        _float("AdaptiveLIF beta", self.beta)
        _surrogate_field(self)

    def params(self) -> dict[str, Any]:
        return {
            "threshold": float(self.threshold),
            "tau": float(self.tau),
            "rho": float(self.rho),
            "beta": float(self.beta),
        }

    def init(self, x0: Array) -> ALIFState:
        return ALIFState(jnp.zeros_like(x0), jnp.zeros_like(x0), jnp.zeros_like(x0))

    def step(self, state: ALIFState, x: Array, params: Params) -> tuple[ALIFState, Array]:
        b = params["rho"] * state.b + params["beta"] * state.o
        lif_state, o = neurons.lif_step(
            LIFState(state.u, state.o),
            x,
            threshold=params["threshold"] + b,
            tau=params["tau"],
            surrogate=get_surrogate(self.surrogate),
            detach_reset=self.detach_reset,
        )
        return ALIFState(lif_state.u, o, b), o

    def potential(self, state: ALIFState) -> Array:
        return (state.u - state.b)[None]

    def level_thresholds(self, params: Params | None = None) -> Any:
        return (self.merge_params(params)["threshold"],)


@dataclasses.dataclass(frozen=True)
class PLIF(LIF):
    """Parametric LIF: :class:`LIF` with ``learn_tau=True``, i.e. ``tau = sigmoid(tau_logit)``;
    parameters ``'threshold'``, ``'tau_logit'`` (learned by default).

    ``tau`` (in ``(0, 1)``) is the initial leak: ``tau_logit`` starts at its logit.
    """

    learn_tau: bool = True


#: The zoo's neurons by name.
ZOO: dict[str, type[NeuronModel]] = {
    "if": IF,
    "lif": LIF,
    "mlf": MLF,
    "adaptive_lif": AdaptiveLIF,
    "plif": PLIF,
}
