"""In-memory data sources and a deterministic batch iterator.

A *source* is anything with ``__len__`` and ``__getitem__`` returning one
example (the ``grain`` random-access data source protocol). ``ArraySource``
holds arrays in memory; :func:`batches` iterates over a source in shuffled
mini-batches, deterministically for a seed and epoch.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping

import numpy as np

__all__ = ["ArraySource", "batches", "num_batches"]


class ArraySource:
    """Examples stored as equal-length arrays, e.g. ``{'image': ..., 'label': ...}``."""

    def __init__(self, arrays: Mapping[str, np.ndarray]):
        lengths = {k: len(v) for k, v in arrays.items()}
        if not lengths or len(set(lengths.values())) != 1:
            raise ValueError(f"ArraySource needs arrays of one common length, got {lengths}")
        self.arrays = dict(arrays)

    def __len__(self) -> int:
        return len(next(iter(self.arrays.values())))

    def __getitem__(self, index) -> dict[str, np.ndarray]:
        return {k: v[index] for k, v in self.arrays.items()}

    def __repr__(self) -> str:
        shapes = {k: (v.shape, str(v.dtype)) for k, v in self.arrays.items()}
        return f"ArraySource({shapes})"


def num_batches(size: int, batch_size: int, drop_remainder: bool) -> int:
    """Batches in one pass over ``size`` examples."""
    return size // batch_size if drop_remainder else -(-size // batch_size)


def batches(
    source: ArraySource,
    batch_size: int,
    *,
    shuffle: bool = False,
    seed: int = 0,
    epoch: int = 0,
    drop_remainder: bool = False,
) -> Iterator[dict[str, np.ndarray]]:
    """One pass over ``source`` in batches; the order depends only on ``(seed, epoch)``.

    Raises:
      ValueError: for a non-positive batch size, or one larger than the source
        when ``drop_remainder`` would leave no batch.
    """
    if not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    n = len(source)
    if drop_remainder and batch_size > n:
        raise ValueError(f"batch_size {batch_size} is larger than the data set ({n} examples)")
    order = np.arange(n)
    if shuffle:
        order = np.random.default_rng([seed, epoch]).permutation(n)
    for b in range(num_batches(n, batch_size, drop_remainder)):
        yield source[order[b * batch_size : (b + 1) * batch_size]]
