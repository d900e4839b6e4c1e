"""Train state: parameters, tdBN running statistics and optimiser state."""

from __future__ import annotations

from typing import Any

import jax
import optax
from flax import linen as nn
from flax.training import train_state

__all__ = ["TrainState", "create_train_state"]


class TrainState(train_state.TrainState):
    """``flax.training.train_state.TrainState`` plus the ``batch_stats`` collection."""

    batch_stats: Any = None


def create_train_state(
    model: nn.Module, tx: optax.GradientTransformation, rng: jax.Array, sample_input: jax.Array
) -> TrainState:
    """Initialises ``model`` on ``sample_input``, a model input of the real shape."""
    variables = jax.jit(lambda r, x: model.init(r, x, train=False))(rng, sample_input)
    return TrainState.create(
        apply_fn=model.apply,
        params=variables["params"],
        tx=tx,
        batch_stats=variables.get("batch_stats", {}),
    )
