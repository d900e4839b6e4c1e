"""One run per work directory: a lock file naming the process that holds it.

Two processes training into one work directory would interleave checkpoints and
metrics. :class:`RunLock` creates ``<workdir>/run.lock`` (JSON: host, pid, the
process's start time, when it was taken) and removes it on release. A lock left by
a process that no longer exists on this host (killed with SIGKILL, a crashed
machine that came back) is *stale*: it is taken over with a one-line notice. A lock
held by a live process, or by another host (whose processes cannot be checked from
here), is refused with :class:`LockedError`, which says who holds it and how to
remove it if that run is gone.

The lock is created atomically: on a local disk as a hard link to a file already
written (so it is never seen empty), with a
create-only request on Google Cloud Storage (``gs://``, through gcsfs). On a
remote store without such requests the check and the write are two requests.
"""

from __future__ import annotations

import json
import os
import socket
import time
from collections.abc import Callable
from typing import Any

from etils import epath

from mlf_jax.train._notice import notice
from mlf_jax.train._paths import is_remote

__all__ = ["LOCK_NAME", "LockedError", "RunLock"]

LOCK_NAME = "run.lock"


class LockedError(RuntimeError):
    """The work directory is in use by another run."""


def _start_time(pid: int) -> str | None:
    """The kernel's start time of ``pid`` (field 22 of ``/proc/<pid>/stat``), or ``None``
    when the process does not exist (or ``/proc`` is not available)."""
    try:
        stat = epath.Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]


def _alive(owner: dict[str, Any]) -> bool:
    """Whether the process that wrote ``owner`` still runs (on this host)."""
    pid = owner.get("pid")
    if not isinstance(pid, int):
        return False
    started = _start_time(pid)
    if started is None:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return not os.path.exists("/proc")  # no /proc: trust kill(0)
    return owner.get("start_time") in (None, started)  # same pid, other process: stale


def _create_local(path: epath.Path, text: str) -> bool:
    """Creates ``path`` holding ``text`` unless it exists, atomically and never empty:
    the text is written to a file of this process, then hard-linked to ``path`` (which
    fails if ``path`` exists). Where hard links are not supported, ``O_EXCL``."""
    target = os.fspath(path)
    tmp = f"{target}.{os.getpid()}.tmp"
    with open(tmp, "w") as f:
        f.write(text)
    try:
        os.link(tmp, target)
        return True
    except FileExistsError:
        return False
    except OSError:  # no hard links here: create-exclusive, then write
        try:
            fd = os.open(target, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            return False
        with os.fdopen(fd, "w") as f:
            f.write(text)
        return True
    finally:
        os.unlink(tmp)


def _create_remote(path: epath.Path, text: str) -> bool:
    """Creates ``path`` unless it exists: one conditional request where the store has
    them (GCS: ``ifGenerationMatch=0`` through gcsfs), else a check and a write."""
    import fsspec

    fs, inner = fsspec.core.url_to_fs(os.fspath(path))
    try:
        with fs.open(inner, "xb") as f:
            f.write(text.encode())
        return True
    except FileExistsError:
        return False
    except (ValueError, NotImplementedError):  # no create-only mode on this store
        if path.exists():
            return False
        path.write_text(text)
        return True


class RunLock:
    """Exclusive use of a work directory by one run (a context manager).

    Args:
      workdir: local path or remote URI; created if missing.
      notify: where the one-line notice of a stale-lock takeover goes.
    """

    def __init__(self, workdir: str | os.PathLike, *, notify: Callable[[str], None] = notice):
        self.path = epath.Path(workdir) / LOCK_NAME
        self.notify = notify
        self.held = False

    def _owner(self) -> dict[str, Any]:
        return {
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "start_time": _start_time(os.getpid()),
            "since": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        }

    def _create(self) -> bool:
        """Writes the lock if there is none; whether it did."""
        text = json.dumps(self._owner())
        if not is_remote(self.path):
            return _create_local(self.path, text)
        return _create_remote(self.path, text)

    def _read(self) -> dict[str, Any]:
        try:
            owner = json.loads(self.path.read_text())
        except (OSError, ValueError):
            return {}
        return owner if isinstance(owner, dict) else {}

    def _remove_stale(self, owner: dict[str, Any]) -> bool:
        """Removes the lock if it still holds ``owner``; whether this process removed it.

        Locally, the check and the removal happen under an exclusive ``flock`` of
        ``run.lock.guard`` (kept next to the lock; the kernel releases it if the process
        dies), so that of several processes taking over the same stale lock exactly one
        removes it, and none removes the lock a winner has just created. Where ``flock``
        is missing, the lock is renamed aside first and put back if it was not the stale
        one (a narrow window remains there).
        """
        if is_remote(self.path):
            self.path.unlink(missing_ok=True)
            return True
        try:
            import fcntl
        except ImportError:  # no flock (Windows)
            return self._rename_stale(owner)
        with open(os.fspath(self.path) + ".guard", "a") as guard:
            fcntl.flock(guard, fcntl.LOCK_EX)
            try:
                if self._read() != owner:  # gone, or replaced by a live run meanwhile
                    return False
                self.path.unlink(missing_ok=True)
                return True
            finally:
                fcntl.flock(guard, fcntl.LOCK_UN)

    def _rename_stale(self, owner: dict[str, Any]) -> bool:
        """:meth:`_remove_stale` without ``flock``: rename aside, put back if not stale."""
        aside = os.fspath(self.path) + f".stale-{os.getpid()}"
        try:
            os.rename(os.fspath(self.path), aside)
        except FileNotFoundError:
            return False
        try:
            with open(aside) as f:
                taken = json.loads(f.read() or "{}")
        except ValueError:
            taken = {}
        if taken != owner:  # a live lock: put it back unless yet another run holds one
            try:
                os.link(aside, os.fspath(self.path))
            except FileExistsError:
                pass
            os.unlink(aside)
            return False
        os.unlink(aside)
        return True

    def acquire(self) -> None:
        """Takes the lock, taking over a stale one.

        Raises:
          LockedError: another live run (or another host) holds it.
        """
        self.path.parent.mkdir(parents=True, exist_ok=True)
        for _ in range(3):
            if self._create():
                self.held = True
                return
            owner = self._read()
            if owner.get("host") == socket.gethostname() and not _alive(owner):
                if self._remove_stale(owner):
                    self.notify(
                        f"taking over the stale lock {self.path} of process {owner.get('pid')} "
                        f"(started {owner.get('since', '?')}), which no longer runs"
                    )
                continue
            if not owner:  # being written right now, or unreadable: look again
                time.sleep(0.2)
                if not self._read():
                    self.notify(f"replacing the unreadable lock file {self.path}")
                    self.path.unlink(missing_ok=True)
                continue
            raise LockedError(
                f"{self.path.parent} is in use by another run: process {owner.get('pid')} on "
                f"host {owner.get('host')} since {owner.get('since', '?')}. Wait for it, use "
                f"another --workdir, or, if that run is gone, delete {self.path}"
            )
        raise LockedError(f"could not take the lock {self.path}")

    def release(self) -> None:
        """Removes the lock if this process holds it."""
        if self.held:
            if self._read().get("pid") == os.getpid():
                self.path.unlink(missing_ok=True)
            self.held = False

    def __enter__(self) -> RunLock:
        self.acquire()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.release()
