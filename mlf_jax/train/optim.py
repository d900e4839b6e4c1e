"""Optimiser of the paper: SGD with momentum, coupled L2 weight decay, LR schedule; and an
exponential moving average of the parameters kept beside any optimiser."""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

__all__ = ["AveragedState", "averaged_params", "learning_rate_schedule", "sgd", "with_average"]

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


class AveragedState(NamedTuple):
    """The state of :func:`with_average`: the wrapped optimiser's, and the average."""

    inner: optax.OptState
    average: optax.Params


def with_average(tx: optax.GradientTransformation, decay: float) -> optax.GradientTransformation:
    """``tx``, keeping an exponential moving average of the parameters in its state.

    After each update the average moves towards the updated parameters:
    ``average <- decay * average + (1 - decay) * (params + updates)``, starting from the
    initial parameters. ``tx`` must be the whole optimiser (its updates are what is added to
    the parameters), and ``update`` must be given ``params`` (as
    ``flax.training.train_state.TrainState.apply_gradients`` does). The average lives in the
    optimiser state, so that it is checkpointed, sharded and restored with it; read it with
    :func:`averaged_params`. The updates themselves are ``tx``'s, unchanged.

    Args:
      tx: the optimiser.
      decay: in ``[0, 1)``; about ``1 / (1 - decay)`` of the last steps weigh in the average.
    """
    if not 0.0 <= decay < 1.0:
        raise ValueError(f"decay must be in [0, 1), got {decay!r}")

    def init(params: optax.Params) -> AveragedState:
        # a copy: the parameters' buffers may be donated to a step that also takes these
        return AveragedState(
            tx.init(params), jax.tree.map(lambda p: jnp.array(p, copy=True), params)
        )

    def update(
        updates: optax.Updates, state: AveragedState, params: optax.Params | None = None
    ) -> tuple[optax.Updates, AveragedState]:
        if params is None:
            raise ValueError("with_average needs the parameters: call update(..., params)")
        updates, inner = tx.update(updates, state.inner, params)
        average = jax.tree.map(
            lambda a, p, u: decay * a + (1.0 - decay) * (p + u), state.average, params, updates
        )
        return updates, AveragedState(inner, average)

    return optax.GradientTransformation(init, update)


def averaged_params(opt_state: Any) -> optax.Params:
    """The parameter average of an optimiser state of :func:`with_average`.

    Raises:
      TypeError: when ``opt_state`` is not one.
    """
    if not isinstance(opt_state, AveragedState):
        raise TypeError(
            f"no parameter average in an optimiser state of type {type(opt_state).__name__}: "
            "build the optimiser with mlf_jax.train.with_average"
        )
    return opt_state.average
