"""Per-model cache of jitted analysis functions (compile once per model and mode)."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import TypeVar

__all__ = ["per_model"]

F = TypeVar("F", bound=Callable)


def per_model(factory: F, maxsize: int = 16) -> F:
    """Memoises ``factory(*key)`` (e.g. ``(model, train)``) when the key is hashable.

    Linen modules hash by their attributes, so equal models share one jitted
    function and repeated analysis calls skip retracing and recompiling. A model
    with unhashable attributes (lists) gets a fresh function every time.
    """
    cached = functools.lru_cache(maxsize)(factory)

    @functools.wraps(factory)
    def get(*key):
        try:
            hash(key)
        except TypeError:
            return factory(*key)
        return cached(*key)

    return get  # type: ignore[return-value]
