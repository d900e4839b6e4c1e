"""Input pipelines: data sources, the grain loader, the data sets of the paper and the
registry of what each data set is."""

from mlf_jax.data import augment, cifar10, digits, events, fashion_mnist, neuromorphic, registry
from mlf_jax.data.errors import DataFileError, DatasetNotFoundError
from mlf_jax.data.idx import read_idx
from mlf_jax.data.loader import make_loader, shard_bounds, steps_per_epoch
from mlf_jax.data.source import ArraySource

__all__ = [
    "ArraySource",
    "DataFileError",
    "DatasetNotFoundError",
    "make_loader",
    "shard_bounds",
    "steps_per_epoch",
    "read_idx",
    "augment",
    "fashion_mnist",
    "digits",
    "cifar10",
    "events",
    "neuromorphic",
    "registry",
]
