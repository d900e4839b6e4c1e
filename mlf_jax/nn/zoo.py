"""The Flax Linen layer for any neuron of :mod:`mlf_jax.zoo` (or any :class:`NeuronModel`)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
from flax import linen as nn

from mlf_jax.nn._run import run_neuron
from mlf_jax.zoo import LIF, NeuronModel

__all__ = ["Neuron"]


class Neuron(nn.Module):
    """A spiking layer running ``model`` over time-major input ``[T, B, ...]``.

    The output has the input's shape (spikes, or spike counts for multi-level models).
    Parameters are optional: ``learn`` names the model's parameters (keys of
    ``model.params()``) that become Flax parameters of the same name, initialised to the
    model's values and stored in ``param_dtype``; the others stay constants. ``None``
    (default) learns ``model.learned`` (``('tau_logit',)`` for :class:`mlf_jax.zoo.PLIF`,
    what ``learn_tau``/``learn_thresholds`` ask of :class:`mlf_jax.zoo.MLF` and
    :class:`mlf_jax.zoo.LIF`, nothing for the others). Learned parameters are shared by all
    units of the layer and are used raw: a model that needs a constraint learns an
    unconstrained value (as PLIF's logit). :class:`mlf_jax.nn.MLF` is this layer with a
    :class:`mlf_jax.zoo.MLF` built from its fields.

    Recording: when the ``'intermediates'`` collection is mutable, the layer sows
    ``'membrane'`` (``model.potential`` of every step, ``[T, K, B, ...]``) and ``'spikes'``,
    as :class:`mlf_jax.nn.MLF` does, so :mod:`mlf_jax.analysis` works on it.

    A drop-in neuron for the ResNet: ``mj.models.resnet(8, neuron=mj.zoo.AdaptiveLIF())``
    (the ResNet wraps a model in this layer).
    """

    model: NeuronModel = LIF()
    learn: Sequence[str] | None = None
    unroll: int | bool | None = None
    param_dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        if not isinstance(self.model, NeuronModel):
            raise TypeError(
                f"Neuron.model must be a mlf_jax.zoo.NeuronModel (e.g. mj.zoo.LIF()), got "
                f"{type(self.model).__name__}"
            )
        return run_neuron(
            self, self.model, x, learn=self.learn, unroll=self.unroll, param_dtype=self.param_dtype
        )
