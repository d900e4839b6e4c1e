"""Training: state, per-device steps, optimiser and the training loop."""

from mlf_jax.train import distributed
from mlf_jax.train.checkpoint import Checkpointer
from mlf_jax.train.loop import evaluate, fit
from mlf_jax.train.metrics import MetricsWriter
from mlf_jax.train.optim import learning_rate_schedule, sgd
from mlf_jax.train.parallel import AXIS, PARALLEL_MODES, DataParallel, make_mesh
from mlf_jax.train.state import TrainState, create_train_state
from mlf_jax.train.step import cross_entropy, eval_step, train_step

__all__ = [
    "distributed",
    "TrainState",
    "create_train_state",
    "train_step",
    "eval_step",
    "cross_entropy",
    "learning_rate_schedule",
    "sgd",
    "fit",
    "evaluate",
    "MetricsWriter",
    "Checkpointer",
    "AXIS",
    "PARALLEL_MODES",
    "DataParallel",
    "make_mesh",
]
