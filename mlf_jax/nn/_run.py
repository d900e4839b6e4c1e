"""The one code path of every neuron layer: a zoo model's parameters made Flax parameters,
its sequence run over time, and its membranes and spikes recorded for analysis."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
from flax import linen as nn

from mlf_jax.zoo import NeuronModel

__all__ = ["RECORD_COLLECTION", "run_neuron"]

#: Flax collection where neurons ``sow`` their membrane potentials and spikes.
RECORD_COLLECTION = "intermediates"


def run_neuron(
    module: nn.Module,
    model: NeuronModel,
    x: jax.Array,
    *,
    learn: Sequence[str] | None,
    unroll: int | bool | None,
    param_dtype: Any,
) -> jax.Array:
    """``model`` over the time-major ``x`` inside ``module`` (a compact Linen method).

    The parameters ``learn`` names (``None``: ``model.learned``) become Flax parameters of
    the same names, initialised to the model's values in ``param_dtype``; the others stay
    constants. When the ``'intermediates'`` collection is mutable the layer sows
    ``'membrane'`` (``model.potential`` of every step, ``[T, K, B, ...]``) and ``'spikes'``;
    otherwise nothing extra is computed.
    """
    name = type(module).__name__
    if x.ndim < 2:
        raise ValueError(f"{name} expects time-major input [T, B, ...], got shape {x.shape}")
    params = model.params()
    names = model.learned if learn is None else tuple(learn)
    if unknown := sorted(set(names) - set(params)):
        raise ValueError(
            f"{name}.learn names {unknown}, which {type(model).__name__} does not have; "
            f"its parameters are {sorted(params)}"
        )
    for p in names:
        value = params[p]
        params[p] = module.param(p, lambda _, v=value: jnp.asarray(v, param_dtype))
    record = module.is_mutable_collection(RECORD_COLLECTION)
    out: Any = model.run(x, params, unroll=unroll, return_states=record)
    if record:
        out, states = out
        module.sow(RECORD_COLLECTION, "membrane", jax.vmap(model.potential)(states))
        module.sow(RECORD_COLLECTION, "spikes", out)
    return out
