"""Per-device train and eval steps.

Both are pure functions of ``(state, batch)``. With ``axis_name`` set they
average gradients and metrics over that device axis (``lax.pmean``), so the
same function serves single-device training and ``pmap``/``shard_map`` data
parallelism.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import optax
from jax import lax

from mlf_jax.train.state import TrainState

__all__ = ["cross_entropy", "model_input", "train_step", "eval_step"]

Batch = dict[str, jax.Array]


def model_input(images: jax.Array) -> jax.Array:
    """Batches are batch-major, so that they split over devices along axis 0;
    event frames ``[B, T, H, W, C]`` become the model's time-major ``[T, B, H, W, C]``.
    Static images ``[B, H, W, C]`` pass unchanged (the model repeats them over time)."""
    return jnp.swapaxes(images, 0, 1) if images.ndim == 5 else images


def cross_entropy(logits: jax.Array, labels: jax.Array) -> jax.Array:
    """Mean softmax cross-entropy of integer labels."""
    return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()


def train_step(
    state: TrainState, batch: Batch, *, axis_name: str | None = None
) -> tuple[TrainState, dict[str, Any]]:
    """One SGD step on ``batch = {'image', 'label'}``: returns the new state and metrics."""

    def loss_fn(params):
        logits, updates = state.apply_fn(
            {"params": params, "batch_stats": state.batch_stats},
            model_input(batch["image"]),
            train=True,
            mutable=["batch_stats"],
        )
        return cross_entropy(logits, batch["label"]), (logits, updates["batch_stats"])

    (loss, (logits, batch_stats)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
    metrics = {
        "loss": loss,
        "accuracy": jnp.mean(jnp.argmax(logits, -1) == batch["label"]),
    }
    if axis_name is not None:
        grads = lax.pmean(grads, axis_name)
        metrics = lax.pmean(metrics, axis_name)
    state = state.apply_gradients(grads=grads, batch_stats=batch_stats)
    return state, metrics


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
