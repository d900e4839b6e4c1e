"""A weights file and its sidecar written and read as one unit.

Two files cannot be replaced by one rename, so a save is a small journal in the files'
directory, under an advisory lock on the directory (one save at a time):

1. the new weights are written to a staged file ``.<stem>.msgpack.<sha>.staged`` and the
   new sidecar to ``<stem>.json.pending``, each through a temporary file of its writer and a
   rename; a kill or a full disk up to here leaves the old pair untouched;
2. the pending sidecar's rename is the commit: from then on the save is completed, by this
   writer or by whoever next saves or loads the stem (:func:`settle`): the staged weights
   become ``<stem>.msgpack``, then the pending sidecar ``<stem>.json``.

So every moment leaves the old pair, or the new pair, or a committed journal that
:func:`settle` finishes; never weights beside a sidecar that describes others.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import secrets
from collections.abc import Iterator
from pathlib import Path

__all__ = ["locked", "pending_path", "settle", "write_pair"]


def pending_path(sidecar: Path) -> Path:
    """Where a save's sidecar waits until its weights are in place."""
    return sidecar.with_name(sidecar.name + ".pending")


def _staged_path(weights: Path, sha256: str) -> Path:
    return weights.with_name(f".{weights.name}.{sha256[:16]}.staged")


@contextlib.contextmanager
def locked(directory: Path) -> Iterator[None]:
    """An exclusive advisory lock on ``directory`` (``flock`` on its descriptor), released
    when the block ends or the process dies."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _write_new(path: Path, data: bytes) -> None:
    """``data`` to ``path`` through a temporary file unique to this writer and a rename."""
    tmp = path.with_name(f".{path.name.lstrip('.')}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.remove(tmp)
        raise


def _sha256(path: Path) -> str | None:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return None


def _fsync_dir(directory: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def write_pair(weights: Path, sidecar: Path, data: bytes, text: str, sha256: str) -> None:
    """Replaces the pair ``(weights, sidecar)`` by ``(data, text)`` as one unit (see the
    module's docs); ``sha256`` is ``data``'s, which ``text`` records.

    Raises:
      OSError: the new files could not be written (a full disk, no permission): the message
        names the pair and says that the old one is left as it was; nothing of the new one
        remains.
    """
    directory = weights.parent
    staged, pending = _staged_path(weights, sha256), pending_path(sidecar)
    with locked(directory):
        settle(weights, sidecar)
        try:
            _write_new(staged, data)
            _write_new(pending, text.encode())
        except OSError as e:
            for path in (staged, pending):
                with contextlib.suppress(OSError):
                    os.remove(path)
            what = "the old pair is left as it was" if sidecar.exists() else "nothing is left"
            raise OSError(
                e.errno, f"could not save {weights} and {sidecar.name} ({e.strerror or e}); {what}"
            ) from e
        _fsync_dir(directory)  # the commit is on disk before the old files go
        os.replace(staged, weights)
        os.replace(pending, sidecar)
        _fsync_dir(directory)


def settle(weights: Path, sidecar: Path) -> str | None:
    """Finishes a save that was interrupted after its commit, and removes what an
    interrupted save left before it (call it holding :func:`locked`); returns a one-line
    notice of what was done, or ``None`` when there was nothing to do.

    Raises:
      OSError: the files could not be renamed or removed (a read-only directory): the pair
        is then read as it is.
    """
    pending = pending_path(sidecar)
    notice = None
    if pending.exists():
        try:
            sha = json.loads(pending.read_text())["sha256"]
        except (OSError, ValueError, KeyError, TypeError):
            sha = None  # torn by a kill before its rename: impossible, but never trusted
        staged = _staged_path(weights, sha) if isinstance(sha, str) else None
        if staged is not None and staged.exists() and _sha256(staged) == sha:
            os.replace(staged, weights)
        if sha is not None and _sha256(weights) == sha:
            os.replace(pending, sidecar)
            notice = f"{sidecar}: completed a save that was interrupted"
        else:
            os.remove(pending)
            notice = f"{sidecar}: discarded a save that was interrupted before its weights"
    leftovers = [*weights.parent.glob(f".{weights.name}.*.staged")]
    leftovers += weights.parent.glob(f".{weights.name}.*.tmp")
    leftovers += weights.parent.glob(f".{pending.name}.*.tmp")
    for leftover in leftovers:  # a writer holds the lock: these are a dead one's
        with contextlib.suppress(FileNotFoundError):
            os.remove(leftover)
    return notice
