"""A Flax Linen layer for any neuron of :mod:`mlf_jax.zoo` (or any :class:`NeuronModel`)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
from flax import linen as nn

from mlf_jax.nn.neuron import RECORD_COLLECTION
from mlf_jax.zoo import LIF, NeuronModel, sequence

__all__ = ["Neuron"]


class Neuron(nn.Module):
    """A spiking layer running ``model`` over time-major input ``[T, B, ...]``.

    The output has the input's shape (spikes, or spike counts for multi-level models).
    Parameters are optional: ``learn`` names the model's parameters (keys of
    ``model.params()``) that become Flax parameters of the same name, initialised to the
    model's values and stored in ``param_dtype``; the others stay constants. ``None``
    (default) learns ``model.learned`` (``('tau_logit',)`` for :class:`mlf_jax.zoo.PLIF`,
    nothing for the others). Learned parameters are shared by all units of the layer and
    are used raw: a model that needs a constraint learns an unconstrained value (as PLIF's
    logit).

    Recording: when the ``'intermediates'`` collection is mutable, the layer sows
    ``'membrane'`` (``model.potential`` of every step, ``[T, K, B, ...]``) and ``'spikes'``,
    as :class:`mlf_jax.nn.MLF` does, so :mod:`mlf_jax.analysis` works on it.

    A drop-in neuron for the ResNet: ``mj.models.resnet(8, neuron=functools.partial(
    mj.nn.Neuron, model=mj.zoo.AdaptiveLIF()))``.
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
        if x.ndim < 2:
            raise ValueError(f"Neuron expects time-major input [T, B, ...], got shape {x.shape}")
        params = self.model.params()
        names = type(self.model).learned if self.learn is None else tuple(self.learn)
        if unknown := sorted(set(names) - set(params)):
            raise ValueError(
                f"Neuron.learn names {unknown}, which {type(self.model).__name__} does not have; "
                f"its parameters are {sorted(params)}"
            )
        for name in names:
            value = params[name]
            params[name] = self.param(name, lambda _, v=value: jnp.asarray(v, self.param_dtype))
        record = self.is_mutable_collection(RECORD_COLLECTION)
        run = sequence(self.model.step, self.model.init, unroll=self.unroll, return_states=record)
        out: Any = run(x, params)
        if record:
            out, states = out
            self.sow(RECORD_COLLECTION, "membrane", jax.vmap(self.model.potential)(states))
            self.sow(RECORD_COLLECTION, "spikes", out)
        return out
