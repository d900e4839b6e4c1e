"""In-memory data sources.

A *source* is anything with ``__len__`` and ``__getitem__`` returning one
example (the ``grain`` random-access data source protocol); ``ArraySource``
holds arrays in memory. :func:`mlf_jax.data.loader.make_loader` batches them.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

__all__ = ["ArraySource"]


class ArraySource:
    """Examples stored as equal-length arrays, e.g. ``{'image': ..., 'label': ...}``."""

    def __init__(self, arrays: Mapping[str, np.ndarray]):
        lengths = {k: len(v) for k, v in arrays.items()}
        if not lengths or len(set(lengths.values())) != 1:
            raise ValueError(f"ArraySource needs arrays of one common length, got {lengths}")
        self.arrays = dict(arrays)

    def __len__(self) -> int:
        return len(next(iter(self.arrays.values())))

    def __getitem__(self, index):
        """One example (an index) or several (a slice, an index array) as
        ``{name: array}``; a name (``source['image']``) gives that whole array."""
        if isinstance(index, str):
            if index not in self.arrays:
                raise KeyError(f"no array {index!r}; this source holds {sorted(self.arrays)}")
            return self.arrays[index]
        return {k: v[index] for k, v in self.arrays.items()}

    def __repr__(self) -> str:
        shapes = {k: (v.shape, str(v.dtype)) for k, v in self.arrays.items()}
        return f"ArraySource({shapes})"
