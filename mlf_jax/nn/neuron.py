"""Flax Linen wrapper of the MLF neuron (``mlf_jax.neurons.mlf``)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
from flax import linen as nn

from mlf_jax import neurons
from mlf_jax.reparam import (
    leak_from_logit,
    logit_of_leak,
    raw_of_thresholds,
    thresholds_from_raw,
)
from mlf_jax.surrogate import Surrogate, get_surrogate, rectangular

__all__ = ["MLF", "RECORD_COLLECTION"]

#: Flax collection where neurons ``sow`` their membrane potentials and spikes.
RECORD_COLLECTION = "intermediates"


class MLF(nn.Module):
    """Multi-level firing neuron layer (K = ``len(thresholds)``; K = 1 is LIF).

    Input is time-major ``[T, B, ...]`` (any trailing shape); the output has
    the same shape and holds spike counts in ``0..K``. By default the layer has no
    parameters and computes exactly :func:`mlf_jax.neurons.mlf`.

    Learned leak and thresholds (both off by default), shared by all units of the layer:

    * ``learn_tau``: a parameter ``'tau_logit'`` (a scalar) with ``tau = sigmoid(tau_logit)``,
      in ``(0, 1)`` whatever its value (as SpikingJelly's parametric LIF), initialised so
      that ``tau`` is the field ``tau`` (which must then lie strictly between 0 and 1).
    * ``learn_thresholds``: a parameter ``'thresholds_raw'`` ``[K]`` with
      ``V_th,k = softplus(raw_1) + ... + softplus(raw_k)`` (a first threshold and positive
      gaps: positive and strictly increasing whatever the values), initialised to the
      field ``thresholds`` (which must then be positive).

    See :mod:`mlf_jax.reparam`; :meth:`constants` gives the values in use. Parameters are
    stored in ``param_dtype`` (float32 by default). ``impl='pallas'`` takes static
    thresholds and leak only: a layer that learns either computes with what ``'auto'``
    picks for its T instead (the scan, or the fused kernel beyond
    :data:`mlf_jax.neurons.MAX_UNROLLED_STEPS`), which take traced values and give them
    gradients; the spikes and input gradients are the same.

    Recording for analysis: when the ``'intermediates'`` collection is mutable
    (``model.apply(..., mutable=['intermediates'])``), the layer sows
    ``'membrane'`` (per-level potentials ``[T, K, B, ...]``) and ``'spikes'``.
    When it is not mutable nothing extra is computed or stored. With learned thresholds,
    analyses of the recorded potentials need the learned values (:meth:`constants`).

    ``impl`` selects how the dynamics are computed (``'auto'``, ``'scan'``,
    ``'fused'``, ``'pallas'``; see :func:`mlf_jax.neurons.mlf`); recording always
    uses the scan.
    """

    thresholds: Sequence[float] = (0.6, 1.6, 2.6)
    tau: float = 0.25
    surrogate: Surrogate | str = rectangular(1.0)
    detach_reset: bool = False
    unroll: int | bool | None = None
    impl: str = "auto"
    learn_tau: bool = False
    learn_thresholds: bool = False
    param_dtype: Any = jnp.float32

    def constants(self, params: Mapping[str, Any] | None = None) -> tuple[Any, Any]:
        """``(thresholds, tau)`` this layer computes with, given its parameters.

        ``params`` is the layer's own parameter dict (e.g.
        ``variables['params']['stem_neuron']``); a constant the layer does not learn is
        its field, as given.
        """
        params = {} if params is None else params
        thresholds: Any = tuple(self.thresholds)
        tau: Any = self.tau
        if self.learn_tau:
            tau = leak_from_logit(params["tau_logit"])
        if self.learn_thresholds:
            thresholds = thresholds_from_raw(params["thresholds_raw"])
        return thresholds, tau

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        if x.ndim < 2:
            raise ValueError(f"MLF expects time-major input [T, B, ...], got shape {x.shape}")
        params: dict[str, jax.Array] = {}
        if self.learn_tau:
            init = logit_of_leak(self.tau)
            params["tau_logit"] = self.param(
                "tau_logit", lambda _: jnp.asarray(init, self.param_dtype)
            )
        if self.learn_thresholds:
            raw = raw_of_thresholds(self.thresholds)
            params["thresholds_raw"] = self.param(
                "thresholds_raw", lambda _: jnp.asarray(raw, self.param_dtype)
            )
        thresholds, tau = self.constants(params)
        impl = self.impl
        if params and impl == "pallas":
            impl = neurons.auto_impl(x.shape[0])  # the Pallas kernel takes static constants
        record = self.is_mutable_collection(RECORD_COLLECTION)
        out: Any = neurons.mlf(
            x,
            thresholds=thresholds,
            tau=tau,
            surrogate=get_surrogate(self.surrogate),
            detach_reset=self.detach_reset,
            unroll=self.unroll,
            return_potential=record,
            impl=impl,
        )
        if record:
            out, u = out
            self.sow(RECORD_COLLECTION, "membrane", u)
            self.sow(RECORD_COLLECTION, "spikes", out)
        return out
