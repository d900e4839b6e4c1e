"""Spiking activity during training: per-layer firing rates for a loss term and for logs.

Two ways to see the neurons' spikes inside a training step, for two purposes:

* :func:`with_firing_rates` wraps a model's ``apply`` so that every neuron layer
  (:class:`mlf_jax.nn.Neuron`, with any zoo model) also
  returns its mean spike count, a scalar, in the collection ``RATES``
  (``'firing_rates'``), differentiable through the surrogate gradient. It uses a Flax
  method interceptor on the layers' outputs, so it works with every neuron
  implementation (the fused kernel included, which recording with ``'intermediates'``
  would replace by the scan), under ``nn.remat`` and inside ``shard_map``/``pmap``.
  The train step's firing-rate regulariser (:func:`firing_rate_penalty`) is built on it.
* :func:`activity_step` records every neuron layer with the ``'intermediates'`` collection
  (membranes and spikes, :mod:`mlf_jax.analysis`) and returns each layer's firing rate and
  dormant fraction on a batch: a separate, per-device function for the logs, so that the
  train step is unchanged when nobody asks for them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
from flax import linen as nn
from jax import lax

from mlf_jax.analysis import collect, dormant_mask
from mlf_jax.nn import RECORD_COLLECTION, is_neuron_layer
from mlf_jax.surrogate import Surrogate
from mlf_jax.train._batch_layout import model_input

__all__ = [
    "RATES",
    "with_firing_rates",
    "layer_firing_rates",
    "firing_rate_penalty",
    "activity_step",
]

#: Collection where :func:`with_firing_rates` puts each neuron layer's mean spike count.
RATES = "firing_rates"


def _sow_rate(next_fun, args, kwargs, context):
    """Interceptor: after a neuron layer's ``__call__``, sows the mean of its spike counts."""
    out = next_fun(*args, **kwargs)
    if is_neuron_layer(context.module) and context.method_name == "__call__":
        context.module.sow(RATES, "rate", jnp.mean(out.astype(jnp.float32)))
    return out


def with_firing_rates(apply_fn: Callable[..., Any]) -> Callable[..., Any]:
    """``apply_fn`` (a Linen ``model.apply``) that also returns the neuron layers' firing rates.

    The wrapped function takes the same arguments, ``mutable`` included, and adds
    ``RATES`` (``'firing_rates'``) to the mutable collections: the returned updates hold,
    for every call of a neuron layer (:class:`mlf_jax.nn.Neuron`),
    ``rate`` = the mean of its output
    spike counts over time, batch and units (spikes per unit per step, in ``[0, K]``), a
    float32 scalar that depends on the parameters through the layer's surrogate gradient.
    Nothing else about the forward pass changes.
    """

    def apply(variables: Any, *args: Any, mutable: Sequence[str], **kwargs: Any) -> Any:
        with nn.intercept_methods(_sow_rate):
            return apply_fn(variables, *args, mutable=[*mutable, RATES], **kwargs)

    return apply


def layer_firing_rates(updates: Mapping[str, Any], axis_name: str | None = None) -> jax.Array:
    """The rates that :func:`with_firing_rates` returned, as one ``[L]`` array (one per
    layer call), averaged over the device axis ``axis_name`` when given (the global batch's
    rate when every device holds an equal share of it).

    Raises:
      ValueError: if there are none (the model has no neuron layer,
        :func:`mlf_jax.nn.is_neuron_layer`).
    """
    leaves = jax.tree.leaves(updates.get(RATES, {}))
    if not leaves:
        raise ValueError(
            "the model has no neuron layer (mlf_jax.nn.Neuron), so it has "
            "no firing rate to "
            "regularise (firing_rate_reg must be 0 for it)"
        )
    rates = jnp.stack(leaves)
    return lax.pmean(rates, axis_name) if axis_name is not None else rates


def firing_rate_penalty(rates: jax.Array, target: float) -> jax.Array:
    """``mean_l (rates[l] - target)^2``: the squared distance of each layer's firing rate
    (mean spike count per unit per step) to ``target``, averaged over the layers."""
    return jnp.mean(jnp.square(jnp.asarray(rates, jnp.float32) - target))


def activity_step(
    state: Any,
    batch: Mapping[str, jax.Array],
    *,
    thresholds: Sequence[float] | None,
    surrogate: Surrogate | str | None,
    axis_name: str | None = None,
) -> dict[str, dict[str, jax.Array]]:
    """Per-layer firing rate and dormant fraction of ``state``'s model on ``batch``.

    Runs the model as the train step does (``train=True``: tdBN with the batch's
    statistics; the updated statistics are discarded) with the ``'intermediates'``
    collection mutable, so every neuron layer records its membranes and spikes
    (:func:`mlf_jax.analysis.collect`). A stochastic input encoder gets the rng stream
    ``'encoder'`` from the state's step (its own draw, not the train step's).

    Args:
      state: a :class:`mlf_jax.train.TrainState`.
      batch: ``{'image': ...}`` (batch-major, as the train step takes it).
      thresholds: the neurons' thresholds, for the dormant fractions; ``None`` leaves them
        out (for neurons whose thresholds are learned or unknown).
      surrogate: the neurons' surrogate, for the dormant fractions (with ``thresholds``).
      axis_name: device axis to average over (per-device use in ``shard_map``/``pmap``).

    Returns:
      dict: ``{'firing_rate': {layer: mean spike count per unit per step}, 'dormant':
      {layer: fraction of (step, unit) pairs with a zero surrogate derivative at every
      level}}`` (:func:`mlf_jax.analysis.firing_rate` and
      :func:`mlf_jax.analysis.dormant_fraction` of each layer), float32 scalars averaged
      over the device axis; ``'dormant'`` is absent without thresholds.
    """

    variables = {"params": state.params, "batch_stats": state.batch_stats}
    _, mutated = state.apply_fn(
        variables,
        model_input(batch["image"]),
        train=True,
        mutable=[RECORD_COLLECTION, "batch_stats"],
        rngs={"encoder": jax.random.fold_in(jax.random.key(0), state.step)},
    )
    records = collect(mutated.get(RECORD_COLLECTION, {}))
    out = {
        "firing_rate": {
            name: jnp.mean(rec.spikes.astype(jnp.float32)) for name, rec in records.items()
        }
    }
    if thresholds is not None and surrogate is not None:
        out["dormant"] = {
            name: jnp.mean(dormant_mask(rec.membrane, thresholds, surrogate).astype(jnp.float32))
            for name, rec in records.items()
        }
    return lax.pmean(out, axis_name) if axis_name is not None else out
