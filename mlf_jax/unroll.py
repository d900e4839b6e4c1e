"""The time loop's unroll policy: how far ``lax.scan`` over time is unrolled when the caller
does not say (shared by the neuron functions, their fused kernel and the zoo's wrapper)."""

from __future__ import annotations

__all__ = ["MAX_UNROLLED_STEPS", "auto_unroll"]

#: Longest sequence that :func:`auto_unroll` unrolls completely.
MAX_UNROLLED_STEPS = 10


def auto_unroll(time_steps: int, unroll: int | bool | None = None) -> int | bool:
    """The ``lax.scan`` unroll for ``time_steps``: ``unroll`` itself unless it is ``None``.

    ``None`` unrolls completely up to :data:`MAX_UNROLLED_STEPS` steps and keeps a
    rolled scan beyond: unrolling lets XLA fuse the steps of a short sequence, but its
    advantage shrinks and its compile time grows faster than linearly with T (figures:
    the benchmarks guide, section [Time loop][bench-time-loop]).
    """
    if unroll is None:
        return True if time_steps <= MAX_UNROLLED_STEPS else 1
    return unroll
