"""Batches from any random-access source with ``grain``: sharded by process, resumable.

:func:`make_loader` wraps a source (``__len__`` and ``__getitem__`` returning a dict of
numpy arrays, e.g. :class:`~mlf_jax.data.source.ArraySource` or a ``tfds.data_source``
wrapper) in a ``grain.python.DataLoader`` and returns its iterator:

- Sharding by process: process ``i`` of ``n`` reads the ``i``-th of ``n`` contiguous
  slices of the source (:func:`shard_bounds`; with ``drop_remainder`` all hold
  ``len(source) // n`` examples and the few left over are dropped, so that every process
  takes the same number of steps). ``batch_size`` is the batch of one process; the
  global batch is ``n * batch_size``.
- Order: each pass over a shard (an *epoch*) is a fresh permutation of it, determined by
  ``(seed, shard, epoch)``. Batches are cut from the stream of examples, so with
  ``num_epochs=None`` (endless) a batch can hold the end of one epoch and the start of
  the next when the shard size is not a multiple of the batch size.
- Augmentation: ``transform(example, rng)`` gets a ``numpy.random.Generator`` that grain
  derives from the seed and the example's position in the stream, so the augmented
  batches are the same on every run with that seed, and after a restore.
- Checkpointing: the iterator's ``get_state()`` returns bytes; ``set_state(state)`` on a
  fresh iterator of a loader built with the same arguments resumes at the same batch.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import grain.python as grain
import numpy as np

__all__ = [
    "ShardSource",
    "Transform",
    "make_loader",
    "shard_bounds",
    "state_after",
    "steps_per_epoch",
]

#: A per-example augmentation: ``(example, rng) -> example``. It must draw all its
#: randomness from ``rng`` (and be picklable, e.g. a module-level function, when
#: ``worker_count > 0``).
Transform = Callable[[dict[str, np.ndarray], np.random.Generator], dict[str, np.ndarray]]


class _RandomMap(grain.RandomMapTransform):
    """A :data:`Transform` as a grain random map."""

    def __init__(self, fn: Transform):
        self.fn = fn

    def random_map(self, element: dict[str, np.ndarray], rng: np.random.Generator):
        return self.fn(element, rng)

    def __repr__(self) -> str:
        return f"_RandomMap({getattr(self.fn, '__qualname__', self.fn)!r})"


def _check_int(name: str, value: Any, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def _process_shard(shard_index: int | None, shard_count: int | None) -> tuple[int, int]:
    """``(shard_index, shard_count)``; missing values come from ``jax.process_*``."""
    if shard_index is None or shard_count is None:
        import jax

        shard_index = jax.process_index() if shard_index is None else shard_index
        shard_count = jax.process_count() if shard_count is None else shard_count
    shard_count = _check_int("shard_count", shard_count, 1)
    shard_index = _check_int("shard_index", shard_index, 0)
    if shard_index >= shard_count:
        raise ValueError(f"shard_index {shard_index} is not below shard_count {shard_count}")
    return shard_index, shard_count


def shard_bounds(
    num_examples: int, shard_index: int, shard_count: int, drop_remainder: bool = True
) -> tuple[int, int]:
    """``[start, stop)`` of shard ``shard_index`` of ``shard_count`` contiguous shards.

    With ``drop_remainder`` every shard holds ``num_examples // shard_count`` examples
    and the last ``num_examples % shard_count`` are left out; without, the first
    ``num_examples % shard_count`` shards hold one example more.
    """
    size, rest = divmod(num_examples, shard_count)
    if drop_remainder:
        return shard_index * size, (shard_index + 1) * size
    start = shard_index * size + min(shard_index, rest)
    return start, start + size + (shard_index < rest)


def steps_per_epoch(
    num_examples: int, batch_size: int, shard_count: int = 1, drop_remainder: bool = True
) -> int:
    """Batches per process in one pass over its shard (the largest shard without
    ``drop_remainder``)."""
    start, stop = shard_bounds(num_examples, 0, shard_count, drop_remainder)
    size = stop - start
    return size // batch_size if drop_remainder else -(-size // batch_size)


class ShardSource:
    """The examples ``[start, stop)`` of a random-access source."""

    def __init__(self, source, start: int, stop: int):
        if not 0 <= start <= stop <= len(source):
            raise ValueError(f"bad shard [{start}, {stop}) of a source of {len(source)}")
        self.source, self.start, self.stop = source, start, stop

    def __len__(self) -> int:
        return self.stop - self.start

    def __getitem__(self, index: int):
        if not -len(self) <= index < len(self):
            raise IndexError(f"index {index} out of range for a shard of {len(self)}")
        return self.source[self.start + int(index) % len(self)]

    def __repr__(self) -> str:
        # grain compares this repr when restoring an iterator's state.
        return f"ShardSource({self.source!r}, start={self.start}, stop={self.stop})"


def _mix_seed(seed: int, shard_index: int) -> int:
    """A 32-bit grain seed from ``(seed, shard_index)``.

    grain shuffles epoch ``e`` with seed ``s + e`` and seeds the rng of the example at
    stream position ``i`` with ``s + i``: seeds ``s`` and ``s + 1`` would give the same
    orders and augmentations shifted by one epoch or example, and every shard the same
    augmentations. Hashing ``(seed, shard_index)`` keeps them independent.
    """
    return int(np.random.SeedSequence([seed, shard_index]).generate_state(1, np.uint32)[0])


def _ensure_absl_flags_parsed() -> None:
    """grain 0.2's worker processes read its absl flags; outside ``absl.app.run`` (tests,
    notebooks) they are unparsed and the workers fail. Mark them parsed, keeping their
    defaults; a later ``flags.FLAGS(argv)`` still parses the command line."""
    from absl import flags

    if not flags.FLAGS.is_parsed():
        flags.FLAGS.mark_as_parsed()


def make_loader(
    source,
    *,
    batch_size: int,
    shuffle: bool,
    seed: int,
    num_epochs: int | None = None,
    drop_remainder: bool = True,
    transform: Transform | None = None,
    shard_index: int | None = None,
    shard_count: int | None = None,
    worker_count: int = 0,
) -> grain.DataLoaderIterator:
    """An iterator over batches (dicts of stacked arrays, e.g. ``image [B, ...]``).

    Args:
      source: random-access source; ``source[i]`` is a dict of numpy arrays.
      batch_size: examples per batch in this process.
      shuffle: a new permutation of the shard every epoch (else the stored order).
      seed: non-negative integer; fixes the orders and the rngs given to ``transform``.
      num_epochs: passes over the shard; ``None`` repeats forever.
      drop_remainder: drop the examples that do not fill equal shards and the last
        partial batch. With ``False`` (e.g. for evaluation) every example is seen once
        per epoch, but shards, and so step counts, may differ by one between processes.
      transform: per-example ``(example, rng) -> example``, applied before batching.
      shard_index: this process's shard; default ``jax.process_index()``.
      shard_count: the number of shards; default ``jax.process_count()``.
      worker_count: grain worker processes (0: in this process). Each worker batches
        the examples it reads (worker ``w`` of ``W`` the ``w``-th, ``w + W``-th, ...), so
        the batches depend on ``worker_count`` (1 gives those of 0), and a state restores
        only into a loader with the same ``worker_count``.

    Returns:
      grain's ``DataLoaderIterator``, with ``get_state()`` and ``set_state(state)``.

    Raises:
      ValueError: for an empty source, bad sizes, seeds or shards, and a batch larger
        than this process's shard.
    """
    num_records = len(source)
    if num_records == 0:
        raise ValueError(f"the source is empty: {source!r}")
    batch_size = _check_int("batch_size", batch_size, 1)
    seed = _check_int("seed", seed, 0)
    if num_epochs is not None:
        num_epochs = _check_int("num_epochs", num_epochs, 1)
    worker_count = _check_int("worker_count", worker_count, 0)
    shard_index, shard_count = _process_shard(shard_index, shard_count)
    start, stop = shard_bounds(num_records, shard_index, shard_count, drop_remainder)
    if batch_size > stop - start:
        raise ValueError(
            f"batch_size {batch_size} (per process) is larger than the shard of process "
            f"{shard_index} of {shard_count}: {stop - start} of the {num_records} examples. "
            "Use a smaller batch or fewer processes."
        )
    # The shard is cut here rather than by grain's ShardOptions: grain 0.2's IndexSampler
    # gives uneven shards (drop_remainder=False) a wrong length, losing or repeating
    # examples. grain then sees one unsharded source per process.
    shard = ShardSource(source, start, stop)
    sampler = grain.IndexSampler(
        num_records=len(shard),
        shard_options=grain.NoSharding(),
        shuffle=shuffle,
        num_epochs=num_epochs,
        seed=_mix_seed(seed, shard_index),
    )
    if worker_count > 0:
        _ensure_absl_flags_parsed()
    operations: list = [] if transform is None else [_RandomMap(transform)]
    operations.append(grain.Batch(batch_size, drop_remainder=drop_remainder))
    loader = grain.DataLoader(
        data_source=shard,
        sampler=sampler,
        operations=operations,
        worker_count=worker_count,
        shard_options=grain.NoSharding(),
    )
    return iter(loader)


def state_after(state: bytes, examples: int) -> bytes:
    """``state`` (``get_state()``) of an iterator of :func:`make_loader` with
    ``worker_count=0``, moved to where it is after reading ``examples`` examples of its order
    from the start: the same sampler and source, another position.

    A run resumed on another number of processes reads other shards in another order; each
    new shard is put at ``step x`` its per-process batch, the same point of the epoch.

    Raises:
      ValueError: for a negative ``examples``, or a state of a loader with worker processes
        (each worker keeps its own position).
    """
    if examples < 0:
        raise ValueError(f"examples must be non-negative, got {examples}")
    fields = json.loads(state)
    if fields.get("worker_count", 0) != 0 or set(fields["last_seen_indices"]) != {"0"}:
        raise ValueError("state_after takes the state of a loader without worker processes")
    # grain's position: the index in the sampler's order of the last example read
    fields["last_seen_indices"] = {"0": examples - 1}
    return json.dumps(fields, indent=4).encode()
