"""Per-device train and eval steps.

Both are pure functions of ``(state, batch)``. With ``axis_name`` set they
average gradients and metrics over that device axis (``lax.pmean``), so the
same function serves single-device training and ``pmap``/``shard_map`` data
parallelism.
"""

from __future__ import annotations

import math
from typing import Any

import jax
import jax.numpy as jnp
import optax
from jax import lax

from mlf_jax.losses import cross_entropy
from mlf_jax.train._batch_layout import model_input
from mlf_jax.train.activity import firing_rate_penalty, layer_firing_rates, with_firing_rates
from mlf_jax.train.state import TrainState

__all__ = ["cross_entropy", "model_input", "encoder_key", "train_step", "eval_step"]

Batch = dict[str, jax.Array]


def encoder_key(
    rng: jax.Array | None, step: jax.typing.ArrayLike, axis_name: str | None = None
) -> jax.Array:
    """The key of the ``'encoder'`` rng stream at ``step``: ``rng`` (default
    ``jax.random.key(0)``) folded with the step and, under a device axis, the device's
    index, so that every step and every device's share of the batch draw new noise."""
    key = jax.random.key(0) if rng is None else rng
    key = jax.random.fold_in(key, step)
    if axis_name is not None:
        key = jax.random.fold_in(key, lax.axis_index(axis_name))
    return key


def train_step(
    state: TrainState,
    batch: Batch,
    *,
    axis_name: str | None = None,
    rng: jax.Array | None = None,
    firing_rate_reg: float = 0.0,
    firing_rate_target: float = 0.0,
) -> tuple[TrainState, dict[str, Any]]:
    """One SGD step on ``batch = {'image', 'label'}``: returns the new state and metrics.

    The model gets the rng stream ``'encoder'`` (``encoder_key`` of ``rng`` and the
    state's step), which a stochastic input encoder draws from
    (``mlf_jax.models.ResNet(encoder='rate')``); models that draw nothing ignore it.

    With ``firing_rate_reg > 0`` the loss gains a firing-rate term,
    ``firing_rate_reg * mean_l (r_l - firing_rate_target)^2``, where ``r_l`` is the mean
    spike count per unit and time step of the ``l``-th neuron layer call
    (:func:`mlf_jax.nn.is_neuron_layer`) on the batch (on the global batch under
    ``axis_name``: the rates are averaged over the devices before the square); its gradient
    reaches the parameters through the neurons' surrogate gradients
    (``mlf_jax.train.activity``: it works with every neuron implementation). The metrics
    then also hold ``'firing_rate_penalty'`` (that term) and
    ``'firing_rate'`` (the mean of ``r_l`` over the layers); ``'loss'`` stays the
    cross-entropy, so the objective is ``loss + firing_rate_penalty``. With
    ``firing_rate_reg = 0`` (the default) the step computes exactly what it computes
    without the term.
    """
    rngs = {"encoder": encoder_key(rng, state.step, axis_name)}

    regularise = _check_firing_rate_reg(firing_rate_reg, firing_rate_target)
    apply_fn = with_firing_rates(state.apply_fn) if regularise else state.apply_fn

    def loss_fn(params):
        logits, updates = apply_fn(
            {"params": params, "batch_stats": state.batch_stats},
            model_input(batch["image"]),
            train=True,
            mutable=["batch_stats"],
            rngs=rngs,
        )
        loss = cross_entropy(logits, batch["label"])
        if not regularise:
            return loss, (logits, updates["batch_stats"], {})
        rates = layer_firing_rates(updates, axis_name)
        penalty = firing_rate_reg * firing_rate_penalty(rates, firing_rate_target)
        extra = {"loss": loss, "firing_rate_penalty": penalty, "firing_rate": jnp.mean(rates)}
        return loss + penalty, (logits, updates["batch_stats"], extra)

    (loss, (logits, batch_stats, extra)), grads = jax.value_and_grad(loss_fn, has_aux=True)(
        state.params
    )
    metrics = {
        "loss": loss,
        "accuracy": jnp.mean(jnp.argmax(logits, -1) == batch["label"]),
        **extra,
    }
    if axis_name is not None:
        grads = lax.pmean(grads, axis_name)
        metrics = lax.pmean(metrics, axis_name)
    state = state.apply_gradients(grads=grads, batch_stats=batch_stats)
    return state, metrics


def _check_firing_rate_reg(weight: float, target: float) -> bool:
    """Whether the firing-rate term is on; ``ValueError`` for a weight or target that is
    not a finite number >= 0 (they are Python numbers: the step's structure depends on
    whether the weight is 0)."""
    for name, v in (("firing_rate_reg", weight), ("firing_rate_target", target)):
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 <= v < math.inf:
            raise ValueError(f"{name} must be a finite number >= 0, got {v!r}")
    return weight > 0


def eval_step(state: TrainState, batch: Batch, *, axis_name: str | None = None) -> dict[str, Any]:
    """Sums of loss and correct predictions over the examples where ``batch['mask']`` is 1.

    ``mask`` (optional, default all ones) lets a padded last batch count correctly.
    """
    logits = state.apply_fn(
        {"params": state.params, "batch_stats": state.batch_stats},
        model_input(batch["image"]),
        train=False,
    )
    mask = batch.get("mask", jnp.ones(logits.shape[0], jnp.float32))
    losses = optax.softmax_cross_entropy_with_integer_labels(logits, batch["label"])
    sums = {
        "loss": jnp.sum(losses * mask),
        "correct": jnp.sum((jnp.argmax(logits, -1) == batch["label"]) * mask),
        "count": jnp.sum(mask),
    }
    if axis_name is not None:
        sums = lax.psum(sums, axis_name)
    return sums
