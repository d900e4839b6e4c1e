"""Input pipelines: data sources and batch iteration."""

from mlf_jax.data import fashion_mnist
from mlf_jax.data.idx import read_idx
from mlf_jax.data.source import ArraySource, batches, num_batches

__all__ = ["ArraySource", "batches", "num_batches", "read_idx", "fashion_mnist"]
