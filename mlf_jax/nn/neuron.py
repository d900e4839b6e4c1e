"""The MLF neuron layer: :class:`mlf_jax.nn.Neuron`'s code path with a
:class:`mlf_jax.zoo.MLF` built from the layer's fields (``mlf_jax.neurons.mlf``'s numbers)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
from flax import linen as nn

from mlf_jax import zoo
from mlf_jax.nn._run import RECORD_COLLECTION, run_neuron
from mlf_jax.surrogate import Surrogate, rectangular

__all__ = ["MLF", "RECORD_COLLECTION"]


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

    def zoo_model(self) -> zoo.MLF:
        """The :class:`mlf_jax.zoo.MLF` this layer runs (the same fields)."""
        return zoo.MLF(
            thresholds=tuple(self.thresholds),
            tau=self.tau,
            surrogate=self.surrogate,
            detach_reset=self.detach_reset,
            learn_tau=self.learn_tau,
            learn_thresholds=self.learn_thresholds,
            impl=self.impl,
        )

    def constants(self, params: Mapping[str, Any] | None = None) -> tuple[Any, Any]:
        """``(thresholds, tau)`` this layer computes with, given its parameters.

        ``params`` is the layer's own parameter dict (e.g.
        ``variables['params']['stem_neuron']``); a constant the layer does not learn is
        its field, as given.
        """
        model = self.zoo_model()
        return model.constants(model.merge_params(params))

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        return run_neuron(
            self, self.zoo_model(), x, learn=None, unroll=self.unroll, param_dtype=self.param_dtype
        )
