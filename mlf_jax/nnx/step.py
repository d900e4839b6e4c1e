"""One training step of an NNX model: the cross-entropy's gradient applied by its optimizer."""

from __future__ import annotations

import jax
from flax import nnx

from mlf_jax.losses import cross_entropy

__all__ = ["train_step"]


def train_step(model: nnx.Module, optimizer: nnx.Optimizer, x: jax.Array, labels: jax.Array):
    """Updates ``model`` in place by ``optimizer`` on the batch ``(x, labels)`` and returns
    the batch's mean cross-entropy (before the update). Wrap it in ``nnx.jit`` (or
    ``nnx.cached_partial``); the model's mode (``model.train()`` / ``model.eval()``) says
    whether tdBN uses and updates the batch statistics."""

    def loss_fn(model):
        return cross_entropy(model(x), labels)

    loss, grads = nnx.value_and_grad(loss_fn)(model)
    optimizer.update(model, grads)
    return loss
