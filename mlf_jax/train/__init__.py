"""Training pieces to compose into a loop: state, per-device steps, data parallelism,
evaluation, optimiser and schedules, checkpoints, metrics, run lock, stop signals, and
the neurons' activity during training (a firing-rate loss term, per-layer statistics).

The loop itself belongs to the experiment (``experiments/trainer.py``): nothing here
reads an experiment config.
"""

try:
    from mlf_jax.train import distributed
    from mlf_jax.train._paths import is_remote, write_atomically
    from mlf_jax.train.activity import activity_step, firing_rate_penalty, with_firing_rates
    from mlf_jax.train.checkpoint import (
        Checkpointer,
        CheckpointError,
        NonFiniteStateError,
        all_finite,
        state_to_tree,
        tree_to_state,
    )
    from mlf_jax.train.evaluation import evaluate, pad_batch
    from mlf_jax.train.lock import LockedError, RunLock
    from mlf_jax.train.metrics import MetricsWriter, read_metrics
    from mlf_jax.train.optim import (
        AveragedState,
        averaged_params,
        learning_rate_schedule,
        sgd,
        with_average,
    )
    from mlf_jax.train.parallel import AXIS, PARALLEL_MODES, DataParallel, make_mesh
    from mlf_jax.train.preemption import StopSignals, agree_to_stop
    from mlf_jax.train.state import TrainState, create_train_state
    from mlf_jax.train.step import cross_entropy, eval_step, model_input, train_step
except ModuleNotFoundError as _error:  # a missing extra, named in one line
    from mlf_jax.extras import missing_extra

    raise missing_extra("mlf_jax.train", "train", _error) from _error

__all__ = [
    "activity_step",
    "firing_rate_penalty",
    "with_firing_rates",
    "distributed",
    "is_remote",
    "write_atomically",
    "TrainState",
    "create_train_state",
    "train_step",
    "eval_step",
    "cross_entropy",
    "model_input",
    "learning_rate_schedule",
    "sgd",
    "with_average",
    "averaged_params",
    "AveragedState",
    "evaluate",
    "pad_batch",
    "MetricsWriter",
    "read_metrics",
    "Checkpointer",
    "CheckpointError",
    "NonFiniteStateError",
    "all_finite",
    "state_to_tree",
    "tree_to_state",
    "RunLock",
    "LockedError",
    "StopSignals",
    "agree_to_stop",
    "AXIS",
    "PARALLEL_MODES",
    "DataParallel",
    "make_mesh",
]
