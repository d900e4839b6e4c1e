"""The one Flax Linen neuron layer, :class:`Neuron`, which runs any neuron model of
:mod:`mlf_jax.zoo` over time, and :func:`MLF`, its preset for the paper's neuron."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
from flax import linen as nn

from mlf_jax import zoo
from mlf_jax.zoo import NeuronModel

__all__ = ["Neuron", "MLF", "RECORD_COLLECTION", "NEURON_LAYERS", "is_neuron_layer"]

#: Flax collection where neuron layers ``sow`` their membrane potentials and spikes.
RECORD_COLLECTION = "intermediates"


class Neuron(nn.Module):
    """A spiking layer running ``model`` over time-major input ``[T, B, ...]``.

    The output has the input's shape: spikes, or spike counts ``0..K`` for a K-level model.
    The default model is the paper's neuron, :class:`mlf_jax.zoo.MLF` with its default
    settings; :func:`MLF` builds this layer from MLF's settings.

    Parameters are optional: ``learn`` names the model's parameters (keys of
    ``model.params()``) that become Flax parameters of the same name, initialised to the
    model's values and stored in ``param_dtype``; the others stay constants. ``None``
    (default) learns ``model.learned``: ``('tau_logit',)`` for :class:`mlf_jax.zoo.PLIF`,
    what ``learn_tau`` / ``learn_thresholds`` ask of :class:`mlf_jax.zoo.MLF` and
    :class:`mlf_jax.zoo.LIF`, nothing for the others. Learned parameters are shared by all
    units of the layer and are used raw: a model that needs a constraint learns an
    unconstrained value (PLIF's and MLF's leak as a logit, MLF's thresholds as a first
    threshold and positive gaps, see :mod:`mlf_jax.reparam`).

    Recording: when the ``'intermediates'`` collection is mutable
    (``model.apply(..., mutable=['intermediates'])``), the layer sows ``'membrane'``
    (``model.potential`` of every step, ``[T, K, B, ...]``) and ``'spikes'``, which
    :mod:`mlf_jax.analysis` reads. When it is not mutable nothing extra is computed.

    ``unroll`` is the time loop's ``lax.scan`` unroll (``None``: by T, see
    :func:`mlf_jax.neurons.auto_unroll`). In a ResNet: ``mj.models.resnet(8,
    neuron=mj.zoo.AdaptiveLIF())`` runs this layer with that model at every position.
    """

    model: NeuronModel = zoo.MLF()
    learn: Sequence[str] | None = None
    unroll: int | bool | None = None
    param_dtype: Any = jnp.float32

    def model_params(self, params: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """All of the model's parameters, with the layer's learned ones from ``params`` (the
        layer's own parameter dict, e.g. ``variables['params']['stem_neuron']``)."""
        return self.model.merge_params(params)

    def constants(self, params: Mapping[str, Any] | None = None) -> tuple[Any, Any]:
        """``(thresholds, tau)`` an MLF layer computes with, given its parameters ``params``
        (decoded where learned; a constant the layer does not learn is the model's field)."""
        if not isinstance(self.model, zoo.MLF):
            raise TypeError(
                f"constants() gives an MLF layer's thresholds and leak; this layer runs "
                f"{type(self.model).__name__}: use model_params()"
            )
        return self.model.constants(self.model_params(params))

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        model = self.model
        if not isinstance(model, NeuronModel):
            raise TypeError(
                f"Neuron.model must be a mlf_jax.zoo.NeuronModel (e.g. mj.zoo.LIF()), got "
                f"{type(model).__name__}"
            )
        if x.ndim < 2:
            raise ValueError(f"Neuron expects time-major input [T, B, ...], got shape {x.shape}")
        params = model.params()
        names = model.learned if self.learn is None else tuple(self.learn)
        if unknown := sorted(set(names) - set(params)):
            raise ValueError(
                f"Neuron.learn names {unknown}, which {type(model).__name__} does not have; "
                f"its parameters are {sorted(params)}"
            )
        for p in names:
            value = params[p]
            params[p] = self.param(p, lambda _, v=value: jnp.asarray(v, self.param_dtype))
        record = self.is_mutable_collection(RECORD_COLLECTION)
        out: Any = model.run(x, params, unroll=self.unroll, return_states=record)
        if record:
            out, states = out
            self.sow(RECORD_COLLECTION, "membrane", jax.vmap(model.potential)(states))
            self.sow(RECORD_COLLECTION, "spikes", out)
        return out


def MLF(  # noqa: N802 - a layer preset, named as the class it stands for
    *,
    unroll: int | bool | None = None,
    param_dtype: Any = jnp.float32,
    name: str | None = None,
    **settings: Any,
) -> Neuron:
    """The multi-level firing layer: :class:`Neuron` running ``mlf_jax.zoo.MLF(**settings)``.

    ``settings`` are the fields of :class:`mlf_jax.zoo.MLF` (``thresholds``, ``tau``,
    ``surrogate``, ``detach_reset``, ``learn_tau``, ``learn_thresholds``, ``impl``), with
    its defaults (the paper's neuron, thresholds 0.6/1.6/2.6). With no learned setting the
    layer has no parameters and computes exactly :func:`mlf_jax.neurons.mlf`.

    Learned leak and thresholds (both off by default) are shared by all units of the layer:
    ``learn_tau`` makes a parameter ``'tau_logit'`` (``tau = sigmoid(tau_logit)``, in
    ``(0, 1)`` whatever its value), ``learn_thresholds`` a parameter ``'thresholds_raw'``
    ``[K]`` (``V_th,k = softplus(raw_1) + ... + softplus(raw_k)``: positive and strictly
    increasing whatever the values), each initialised to the setting's value.
    :meth:`Neuron.constants` gives the values in use. ``impl='pallas'`` takes a static
    leak and thresholds only: a layer that learns either computes with what ``'auto'``
    picks for its T instead, which takes traced values; spikes and gradients are the same.

    Raises:
      TypeError: a setting that :class:`mlf_jax.zoo.MLF` does not have.
    """
    return Neuron(model=zoo.MLF(**settings), unroll=unroll, param_dtype=param_dtype, name=name)


#: The neuron layer classes: what the firing-rate regulariser, the activity logs and the
#: gradient analysis look for.
NEURON_LAYERS = (Neuron,)


def is_neuron_layer(module: Any) -> bool:
    """Whether ``module`` is a spiking layer (``[T, B, ...]`` in, spikes out)."""
    return isinstance(module, NEURON_LAYERS)
