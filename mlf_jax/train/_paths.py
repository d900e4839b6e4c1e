"""Local or remote: the one question about a path that the writers need to ask."""

from __future__ import annotations

import os

from etils import epath

from mlf_jax.files import is_remote, write_local_atomically

__all__ = ["is_remote", "write_atomically"]


def write_atomically(path: str | os.PathLike, data: bytes | str) -> None:
    """Replaces ``path`` by ``data``: on a local disk through a temporary file and a rename,
    so that a kill leaves the old or the new file, never a torn one; remotely (``gs://``)
    in one upload (an object store replaces an object whole).

    Raises:
      OSError: the local write failed (a full disk, no permission); its message names
        ``path``, and the temporary file is removed.
    """
    if is_remote(path):
        epath.Path(path).write_bytes(data.encode() if isinstance(data, str) else data)
    else:
        write_local_atomically(path, data)
