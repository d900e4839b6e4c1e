"""Flax Linen wrapper of the MLF neuron (``mlf_jax.neurons.mlf``)."""

from __future__ import annotations

from collections.abc import Sequence

import jax
from flax import linen as nn

from mlf_jax import neurons
from mlf_jax.surrogate import Surrogate, get_surrogate, rectangular

__all__ = ["MLF", "RECORD_COLLECTION"]

#: Flax collection where neurons ``sow`` their membrane potentials and spikes.
RECORD_COLLECTION = "intermediates"


class MLF(nn.Module):
    """Multi-level firing neuron layer (K = ``len(thresholds)``; K = 1 is LIF).

    Input is time-major ``[T, B, ...]`` (any trailing shape); the output has
    the same shape and holds spike counts in ``0..K``. The layer has no
    parameters.

    Recording for analysis: when the ``'intermediates'`` collection is mutable
    (``model.apply(..., mutable=['intermediates'])``), the layer sows
    ``'membrane'`` (per-level potentials ``[T, K, B, ...]``) and ``'spikes'``.
    When it is not mutable nothing extra is computed or stored.

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

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        if x.ndim < 2:
            raise ValueError(f"MLF expects time-major input [T, B, ...], got shape {x.shape}")
        record = self.is_mutable_collection(RECORD_COLLECTION)
        out = neurons.mlf(
            x,
            thresholds=tuple(self.thresholds),
            tau=self.tau,
            surrogate=get_surrogate(self.surrogate),
            detach_reset=self.detach_reset,
            unroll=self.unroll,
            return_potential=record,
            impl=self.impl,
        )
        if record:
            out, u = out
            self.sow(RECORD_COLLECTION, "membrane", u)
            self.sow(RECORD_COLLECTION, "spikes", out)
        return out
