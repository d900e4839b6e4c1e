"""Input pipelines: data sources, the grain loader, the data sets of the paper and the
registry of what each data set is."""

try:
    from mlf_jax.data import augment, cifar10, digits, events, fashion_mnist, neuromorphic, registry
    from mlf_jax.data.errors import DataFileError, DatasetNotFoundError
    from mlf_jax.data.idx import read_idx
    from mlf_jax.data.loader import make_loader, shard_bounds, steps_per_epoch
    from mlf_jax.data.source import ArraySource
except ModuleNotFoundError as _error:  # a missing extra, named in one line
    from mlf_jax.extras import missing_extra

    raise missing_extra("mlf_jax.data", "data", _error) from _error

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
