"""The layout of a batch against the model's: a leaf that the step and the activity logs share."""

from __future__ import annotations

import jax
import jax.numpy as jnp

__all__ = ["model_input"]


def model_input(images: jax.Array) -> jax.Array:
    """Batches are batch-major, so that they split over devices along axis 0;
    event frames ``[B, T, H, W, C]`` become the model's time-major ``[T, B, H, W, C]``.
    Static images ``[B, H, W, C]`` pass unchanged (the model repeats them over time)."""
    return jnp.swapaxes(images, 0, 1) if images.ndim == 5 else images
