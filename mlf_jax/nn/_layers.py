"""Which Linen modules are spiking neuron layers: what the firing-rate regulariser, the
activity logs and the gradient analysis look for."""

from __future__ import annotations

from typing import Any

from mlf_jax.nn.neuron import MLF
from mlf_jax.nn.zoo import Neuron

__all__ = ["NEURON_LAYERS", "is_neuron_layer"]

#: The neuron layers: :class:`mlf_jax.nn.MLF` and :class:`mlf_jax.nn.Neuron` (any zoo model).
NEURON_LAYERS = (MLF, Neuron)


def is_neuron_layer(module: Any) -> bool:
    """Whether ``module`` is a spiking layer (``[T, B, ...]`` in, spikes out)."""
    return isinstance(module, NEURON_LAYERS)
