"""The classification loss the training loop and the analysis tools share."""

from __future__ import annotations

import jax
import jax.numpy as jnp

__all__ = ["cross_entropy"]


def cross_entropy(logits: jax.Array, labels: jax.Array) -> jax.Array:
    """Softmax cross-entropy with integer labels, averaged over the batch (a float32 scalar).

    The mean over the batch of optax's ``softmax_cross_entropy_with_integer_labels`` (which
    gives one loss per example), computed in float32 whatever the logits' dtype.

    Args:
      logits: ``[..., num_classes]``.
      labels: integer class indices of shape ``logits.shape[:-1]``.

    Raises:
      ValueError: when ``labels`` are not integers of that shape (checked under ``jit`` too).
    """
    logits, labels = jnp.asarray(logits), jnp.asarray(labels)
    if labels.shape != logits.shape[:-1] or not jnp.issubdtype(labels.dtype, jnp.integer):
        raise ValueError(
            f"labels must be integers of shape {logits.shape[:-1]} for logits of shape "
            f"{logits.shape}, got {labels.dtype} {labels.shape}"
        )
    logp = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)
    return -jnp.mean(jnp.take_along_axis(logp, labels[..., None], axis=-1))
