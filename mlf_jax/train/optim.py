"""Optimiser of the paper: SGD with momentum, coupled L2 weight decay, LR schedule."""

from __future__ import annotations

import optax

__all__ = ["learning_rate_schedule", "sgd"]

SCHEDULES = ("step", "cosine", "constant")


def learning_rate_schedule(
    base_lr: float,
    steps_per_epoch: int,
    num_epochs: int,
    *,
    kind: str = "step",
    decay_epochs: int = 40,
    decay_factor: float = 0.1,
    warmup_epochs: float = 0.0,
) -> optax.Schedule:
    """Learning rate per step.

    ``'step'``: ``base_lr * decay_factor ** (epoch // decay_epochs)`` (the paper's
    x0.1 every 40 epochs); ``'cosine'``: cosine decay to 0 over the run;
    ``'constant'``. An optional linear warm-up from 0 precedes any of them.
    """
    if kind not in SCHEDULES:
        raise ValueError(f"unknown schedule {kind!r}; expected one of {SCHEDULES}")
    if steps_per_epoch < 1 or num_epochs < 1:
        raise ValueError(
            f"steps_per_epoch and num_epochs must be positive, got {steps_per_epoch}, {num_epochs}"
        )
    warmup = int(round(warmup_epochs * steps_per_epoch))
    total = steps_per_epoch * num_epochs
    if kind == "step":
        boundaries = {
            steps_per_epoch * e - warmup: decay_factor
            for e in range(decay_epochs, num_epochs, decay_epochs)
        }
        main = optax.piecewise_constant_schedule(base_lr, boundaries)
    elif kind == "cosine":
        main = optax.cosine_decay_schedule(base_lr, max(total - warmup, 1))
    else:
        main = optax.constant_schedule(base_lr)
    if warmup == 0:
        return main
    return optax.join_schedules([optax.linear_schedule(0.0, base_lr, warmup), main], [warmup])


def sgd(
    learning_rate: float | optax.Schedule, momentum: float = 0.9, weight_decay: float = 1e-4
) -> optax.GradientTransformation:
    """PyTorch's ``SGD(momentum, weight_decay)``: ``g + wd * p`` enters the momentum buffer."""
    return optax.chain(
        optax.add_decayed_weights(weight_decay),
        optax.sgd(learning_rate, momentum=momentum),
    )
