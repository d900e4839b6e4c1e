"""Local or remote: the one question about a path that the writers need to ask."""

from __future__ import annotations

import contextlib
import os

from etils import epath

__all__ = ["is_remote", "write_atomically"]


def is_remote(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a URI of a remote store (``gs://``, ``s3://``, ...)."""
    return "://" in os.fspath(path)


def write_atomically(path: str | os.PathLike, data: bytes | str) -> None:
    """Replaces ``path`` by ``data``: on a local disk through a temporary file and a rename,
    so that a kill leaves the old or the new file, never a torn one; remotely in one upload
    (an object store replaces an object whole).

    Raises:
      OSError: the local write failed (a full disk, no permission); its message names
        ``path``, and the temporary file is removed.
    """
    target = epath.Path(path)
    data = data.encode() if isinstance(data, str) else data
    if is_remote(target):
        target.write_bytes(data)
        return
    tmp = target.parent / f".{target.name}.tmp"
    try:
        tmp.write_bytes(data)
        os.replace(os.fspath(tmp), os.fspath(target))
    except OSError as e:  # a full disk names no file: say which, and leave no empty temporary
        with contextlib.suppress(OSError):
            os.remove(os.fspath(tmp))
        raise OSError(
            e.errno, f"could not write {target} ({e.strerror or e}); it is left as it was"
        ) from e
