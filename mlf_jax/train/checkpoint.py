"""Checkpoints with Orbax: train state, RNG and the data iterator's position.

A checkpoint holds ``{'state': {step, params, batch_stats, opt_state, rng},
'meta': {json}}`` where ``meta`` carries the data iterator's state and any
bookkeeping (epoch, best accuracy). The directory may be local or remote
(``gs://bucket/run/checkpoints``): every path goes through ``etils.epath``.

What :class:`Checkpointer` guarantees:

* Only finite state is saved: :meth:`Checkpointer.save` refuses a tree with a
  NaN or infinity (:class:`NonFiniteStateError`), so the newest checkpoint is
  always one that training can go on from.
* Orbax writes each checkpoint to a temporary directory and renames it when
  complete, so an interrupted save never looks finished. A save that fails
  (a full disk) removes its temporary directory, and temporary directories left
  by a killed process are removed when the next :class:`Checkpointer` opens the
  directory (:meth:`Checkpointer.remove_partial_saves`).
* A latest checkpoint that cannot be read is skipped, with a one-line notice, in
  favour of the one before it, and moved to ``<directory>.unreadable/`` (the run
  will write that step again); when checkpoints exist but none can be read,
  :meth:`Checkpointer.restore_latest` raises :class:`CheckpointError` instead of
  letting the caller start over (and delete them).
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
from etils import epath
from jax import lax
from jax.sharding import SingleDeviceSharding

from mlf_jax.train._notice import notice
from mlf_jax.train._paths import is_remote
from mlf_jax.train.state import TrainState

__all__ = [
    "Checkpointer",
    "CheckpointError",
    "NonFiniteStateError",
    "all_finite",
    "state_to_tree",
    "tree_to_state",
]

#: Suffix of Orbax's temporary directories (``<step>.orbax-checkpoint-tmp-<n>``).
_TMP_MARK = ".orbax-checkpoint-tmp"


class CheckpointError(RuntimeError):
    """A checkpoint could not be written, or none of the existing ones can be read."""


class NonFiniteStateError(FloatingPointError):
    """The state to save holds a NaN or an infinity."""


def state_to_tree(state: TrainState, rng: jax.Array) -> dict[str, Any]:
    """The arrays of a train state (and the RNG key) as a plain dict."""
    return {
        "step": state.step,
        "params": state.params,
        "batch_stats": state.batch_stats,
        "opt_state": state.opt_state,
        # a host-side copy: the key is the same on every process, and Orbax refuses a
        # process-local jax.Array in a multi-process checkpoint
        "rng": np.asarray(jax.random.key_data(rng)),
    }


def tree_to_state(tree: dict[str, Any], like: TrainState) -> tuple[TrainState, jax.Array]:
    """Inverse of :func:`state_to_tree`, with ``apply_fn``/``tx`` taken from ``like``."""
    state = like.replace(
        step=tree["step"],
        params=tree["params"],
        batch_stats=tree["batch_stats"],
        opt_state=tree["opt_state"],
    )
    return state, jax.random.wrap_key_data(jnp.asarray(tree["rng"]))


def _local(x: Any) -> Any:
    """This process's copy of a replicated global array (the array itself otherwise)."""
    if isinstance(x, jax.Array) and not x.is_fully_addressable:
        return x.addressable_data(0)
    return x


@jax.jit
def _finite(leaves: list[jax.Array]) -> jax.Array:
    return jnp.all(jnp.stack([jnp.all(jnp.isfinite(x)) for x in leaves]))


#: The meta key under which a checkpoint records its state's fingerprint.
FINGERPRINT_KEY = "fingerprint"


def _as_words(x: jax.Array) -> jax.Array:
    """``x``'s bits as a flat uint32 array (8-byte items as two words, smaller ones widened)."""
    size = jnp.dtype(x.dtype).itemsize
    if x.dtype == jnp.bool_:
        return x.reshape(-1).astype(jnp.uint32)
    if size == 8:
        return lax.bitcast_convert_type(x, jnp.uint32).reshape(-1)
    unsigned = {4: jnp.uint32, 2: jnp.uint16, 1: jnp.uint8}[size]
    return lax.bitcast_convert_type(x, unsigned).reshape(-1).astype(jnp.uint32)


@jax.jit
def _fingerprints(leaves: list[jax.Array]) -> list[jax.Array]:
    """Per leaf, ``sum_i (2 i + 1) w_i mod 2^32`` over its bits as 32-bit words ``w_i``:
    flipping any one bit changes it (an odd weight times a power of two below ``2^32`` is
    never 0 mod ``2^32``), and it is computed where the arrays live, sharded or not."""
    out = []
    for x in leaves:
        words = _as_words(x)
        weights = 2 * jnp.arange(words.size, dtype=jnp.uint32) + 1
        out.append(jnp.sum(words * weights, dtype=jnp.uint32))
    return out


def fingerprint(tree: Any) -> list[int]:
    """A fingerprint of every leaf of ``tree`` (its values' bits, as :func:`_fingerprints`
    computes), as JSON integers: what a checkpoint records and its restore checks."""
    leaves = [jnp.asarray(x) if not isinstance(x, jax.Array) else x for x in jax.tree.leaves(tree)]
    return [int(v) for v in jax.device_get(_fingerprints(leaves))]


def all_finite(tree: Any) -> bool:
    """Whether every floating-point leaf of ``tree`` is free of NaN and infinity."""
    leaves = [
        _local(x)
        for x in jax.tree.leaves(tree)
        if jnp.issubdtype(getattr(x, "dtype", None) or np.asarray(x).dtype, jnp.inexact)
    ]
    return bool(_finite(leaves)) if leaves else True


def _restore_target(x: Any) -> Any:
    """What to restore one leaf of ``like`` as: an array on ``x``'s devices, or numpy.

    Without a sharding, Orbax would place each array as it was saved, on the devices
    that wrote it, and refuse the checkpoint on any other device count.
    """
    if isinstance(x, jax.ShapeDtypeStruct):
        if x.sharding is not None:
            return x
        device = jax.local_devices()[0]
        return jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=SingleDeviceSharding(device))
    if isinstance(x, jax.Array):
        return jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding)
    x = np.asarray(x)
    return np.zeros(x.shape, x.dtype)


@contextmanager
def _quiet_orbax() -> Iterator[None]:
    """Silences the loggers that print whole tracebacks (Orbax's, asyncio's) for an
    error we report ourselves in one line."""
    loggers = [logging.getLogger(n) for n in ("absl", "asyncio", "orbax")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.setLevel(level)


def _is_closed_loop_echo(unraisable: Any) -> bool:
    """Whether an unraisable error is a write callback finding Orbax's event loop closed.

    When a save fails (a full disk), TensorStore's pending writes fail one by one and each
    calls back into the event loop that the failed save has already closed: hundreds of
    identical ``RuntimeError: Event loop is closed`` tracebacks, printed as "unraisable"
    errors, about an error the caller reports itself.
    """
    value = unraisable.exc_value
    return isinstance(value, RuntimeError) and str(value) == "Event loop is closed"


class _NoUnretrievedTasks(logging.Filter):
    """Drops asyncio's "Task exception was never retrieved" and "Future exception was never
    retrieved" records: after a failed save, the tasks and futures of its other writes log
    their own copy of the error (with a traceback) when collected."""

    def filter(self, record: logging.LogRecord) -> bool:
        text = str(record.msg)
        return "exception was never retrieved" not in text and "Exception in callback" not in text


class _NoOrbaxErrors(logging.Filter):
    """Drops the records that Orbax's own code logs (through absl): after a failed save, its
    background threads log their copy of the error, with a traceback, once the save has
    already raised it."""

    def filter(self, record: logging.LogRecord) -> bool:
        return f"{os.sep}orbax{os.sep}" not in record.pathname


@contextmanager
def _without_failed_save_echoes() -> Iterator[None]:
    """Keeps the echoes of a failing save's background writes out of the output.

    During the save, :func:`_is_closed_loop_echo` errors are dropped (every other
    unraisable error goes on to the hook in place before). If the save fails, that stays
    so, and asyncio's unretrieved-task records and Orbax's own log records are dropped
    too, for the rest of the process, which is stopping on the error the caller reports in
    one line; if it succeeds, the process is left as it was.
    """
    previous = sys.unraisablehook
    if not getattr(previous, "_drops_loop_echoes", False):

        def hook(unraisable: Any) -> None:
            if not _is_closed_loop_echo(unraisable):
                previous(unraisable)

        hook._drops_loop_echoes = True  # type: ignore[attr-defined]
        sys.unraisablehook = hook
    try:
        yield
    except BaseException:
        for name, kind in (("asyncio", _NoUnretrievedTasks), ("absl", _NoOrbaxErrors)):
            logger = logging.getLogger(name)
            if not any(isinstance(f, kind) for f in logger.filters):
                logger.addFilter(kind())
        raise
    sys.unraisablehook = previous


class CorruptCheckpointError(ValueError):
    """A restored state whose fingerprint differs from the one recorded when it was saved."""


def _check_fingerprint(tree: Any, recorded: list[int] | None) -> None:
    """Raises :class:`CorruptCheckpointError` when the restored ``tree`` has not the
    fingerprint ``recorded`` at its save (``None``: a checkpoint from before fingerprints)."""
    if recorded is None:
        return
    got = fingerprint(tree)
    if got != recorded:
        bad = sum(a != b for a, b in zip(got, recorded, strict=False))
        raise CorruptCheckpointError(
            f"its data differ from what was saved ({bad} of {len(recorded)} arrays fail "
            "their fingerprint)"
        )


def _short(e: BaseException) -> str:
    """The error's type and the first line of its message (whole: it may end in a path)."""
    first = str(e).strip().splitlines()[0] if str(e).strip() else ""
    return f"{type(e).__name__}: {first}"


class Checkpointer:
    """Saves and restores training checkpoints in ``directory`` (keeps ``max_to_keep``).

    Args:
      directory: a local path or a remote URI (``gs://...``), created if missing.
      max_to_keep: how many of the newest checkpoints to keep (at least 1).
      notify: where one-line notices go (default: stderr).
    """

    def __init__(
        self,
        directory: str | os.PathLike,
        max_to_keep: int = 3,
        *,
        notify: Callable[[str], None] = notice,
    ):
        if isinstance(max_to_keep, bool) or not isinstance(max_to_keep, int) or max_to_keep < 1:
            raise ValueError(f"max_to_keep must be an integer >= 1, got {max_to_keep!r}")
        # Orbax wants absolute paths; a relative one is taken from the working directory
        self.directory = epath.Path(
            directory if is_remote(directory) else os.path.abspath(os.fspath(directory))
        )
        self.notify = notify
        if jax.process_index() == 0:
            self.directory.mkdir(parents=True, exist_ok=True)
            self.remove_partial_saves()
        self.manager = ocp.CheckpointManager(
            self.directory,
            options=ocp.CheckpointManagerOptions(
                max_to_keep=max_to_keep, create=True, enable_async_checkpointing=False
            ),
        )

    def partial_saves(self) -> list[epath.Path]:
        """Temporary directories of saves that never completed."""
        if not self.directory.exists():
            return []
        return sorted(p for p in self.directory.iterdir() if _TMP_MARK in p.name)

    def remove_partial_saves(self) -> None:
        """Deletes what killed or failed saves left behind (one notice each)."""
        for p in self.partial_saves():
            self.notify(f"removing {p}, left by a save that did not complete")
            p.rmtree(missing_ok=True)

    def all_steps(self) -> list[int]:
        """Steps of the complete checkpoints, oldest first."""
        self.manager.reload()
        return sorted(self.manager.all_steps())

    def save(self, step: int, tree: dict[str, Any], meta: dict[str, Any]) -> None:
        """Writes checkpoint ``step`` (blocking until it is complete).

        Raises:
          NonFiniteStateError: ``tree`` holds a NaN or infinity; nothing is written.
          CheckpointError: the save failed (e.g. a full disk); its partial files
            are removed.
        """
        if not all_finite(tree):
            raise NonFiniteStateError(
                f"the state at step {step} holds NaN or infinite values; not saving it"
            )
        meta = {**meta, FINGERPRINT_KEY: fingerprint(tree)}
        try:
            with _quiet_orbax(), _without_failed_save_echoes():
                self.manager.save(
                    int(step),
                    args=ocp.args.Composite(
                        state=ocp.args.StandardSave(tree), meta=ocp.args.JsonSave(dict(meta))
                    ),
                    force=True,
                )
                self.manager.wait_until_finished()
        except Exception as e:
            if jax.process_index() == 0:
                self._remove_failed_save()
            raise CheckpointError(
                f"could not save the checkpoint at step {step} in {self.directory} ({_short(e)})"
            ) from e

    def _remove_failed_save(self, settle: float = 0.5, limit: float = 10.0) -> None:
        """Removes the temporary folders of a save that failed, on the failure itself.

        The save's other writers (Orbax's and TensorStore's threads) may still create files
        and folders after its error was raised: the folders are removed again until none
        has come back for ``settle`` seconds (at most ``limit`` seconds in all)."""
        with contextlib.suppress(Exception):  # its error is the one being reported
            self.manager.wait_until_finished()
        start = quiet_since = time.monotonic()
        while time.monotonic() - start < limit:
            left = self.partial_saves()
            for p in left:
                with contextlib.suppress(OSError):  # a writer still adding to it: again
                    p.rmtree(missing_ok=True)
            now = time.monotonic()
            if left:
                quiet_since = now
            elif now - quiet_since >= settle:
                return
            time.sleep(0.05)

    def restore_latest(
        self, like: dict[str, Any], *, check_meta: Callable[[dict], Any] | None = None
    ) -> tuple[int, dict[str, Any], dict] | None:
        """The newest readable checkpoint as ``(step, tree, meta)``, or ``None`` if there is none
        (``meta`` as it was given to :meth:`save`, without the fingerprint).

        ``like`` is a tree of the same structure (arrays or shape/dtype structs). Each
        array is restored onto ``like``'s devices (its sharding; a struct without one:
        this process's first device; a numpy leaf: as numpy), never onto the devices
        that wrote it, so a checkpoint saved on N devices resumes on M. A checkpoint is
        unreadable when Orbax cannot restore it, when its state's fingerprint is not the
        one recorded at its save (corrupt bytes), or when ``check_meta(meta)`` raises a
        ``KeyError``, ``TypeError`` or ``ValueError`` (the caller's fields missing or
        malformed); it is skipped with a one-line notice, falling back to the one before it.

        Raises:
          CheckpointError: checkpoints exist but none of them can be read.
        """
        target = jax.tree.map(_restore_target, like)
        steps = self.all_steps()
        failures = []
        for step in reversed(steps):
            try:
                with _quiet_orbax(), _without_failed_save_echoes():
                    restored = self.manager.restore(
                        step,
                        args=ocp.args.Composite(
                            state=ocp.args.StandardRestore(target), meta=ocp.args.JsonRestore()
                        ),
                    )
                meta = dict(restored["meta"])
                _check_fingerprint(restored["state"], meta.pop(FINGERPRINT_KEY, None))
                if check_meta is not None:
                    check_meta(meta)
                self._set_aside([s for s in steps if s > step])
                return step, restored["state"], meta
            except Exception as e:  # noqa: BLE001 - any unreadable checkpoint is skipped
                failures.append(f"step {step}: {_short(e)}")
                self.notify(
                    f"checkpoint at step {step} in {self.directory} could not be restored "
                    f"({_short(e)}); trying the one before it"
                )
        if steps:
            raise CheckpointError(
                f"none of the checkpoints in {self.directory} (steps {steps}) can be restored; "
                "they are left untouched. Move them away to start over in this workdir. "
                + "; ".join(failures[:3])
            )
        return None

    @property
    def unreadable_directory(self) -> epath.Path:
        """Where unreadable checkpoints are moved once an older one was restored."""
        return self.directory.parent / f"{self.directory.name}.unreadable"

    def _set_aside(self, steps: list[int]) -> None:
        """Moves unreadable checkpoints newer than the restored one out of the way (the
        run will save those steps again), keeping them for inspection."""
        if not steps:
            return
        if jax.process_index() == 0:
            self._move_aside(steps)
        if jax.process_count() > 1:  # every process must see the moved steps gone
            from jax.experimental import multihost_utils

            multihost_utils.sync_global_devices("mlf_jax: unreadable checkpoints set aside")
        self.manager.reload()

    def _move_aside(self, steps: list[int]) -> None:
        for step in steps:
            target = self.unreadable_directory / f"{step}-{time.strftime('%Y%m%d-%H%M%S')}"
            target.parent.mkdir(parents=True, exist_ok=True)
            try:
                (self.directory / str(step)).rename(target)
                self.notify(f"moved the unreadable checkpoint {step} to {target}")
            except OSError as e:
                (self.directory / str(step)).rmtree(missing_ok=True)
                self.notify(f"deleted the unreadable checkpoint {step} (could not move it: {e})")

    def close(self) -> None:
        self.manager.close()
