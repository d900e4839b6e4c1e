"""Files the library and the experiments write: local files that a kill cannot tear, and JSON
that a person can read (sidecars, results). :func:`mlf_jax.train.write_atomically` adds
remote stores (``gs://``) on top of :func:`write_local_atomically`."""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

__all__ = ["dumps", "is_remote", "write_local_atomically"]


def is_remote(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a URI of a remote store (``gs://``, ``s3://``, ...)."""
    return "://" in os.fspath(path)


def write_local_atomically(path: str | os.PathLike, data: bytes | str) -> None:
    """Replaces the local file ``path`` by ``data`` through a temporary file and a rename,
    so that a kill leaves the old or the new file, never a torn one.

    Raises:
      OSError: the write failed (a full disk, no permission); its message names ``path``,
        and the temporary file is removed.
      ValueError: ``path`` is a remote URI.
    """
    if is_remote(path):
        raise ValueError(f"{os.fspath(path)}: a local path is needed here")
    data = data.encode() if isinstance(data, str) else data
    target = Path(path)
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


def dumps(value: Any, indent: int = 2, _level: int = 0) -> str:
    """JSON as ``json.dumps(value, indent=2)``, but with every list of numbers or strings on
    one line (a confusion matrix row by row), so that the output stays readable."""
    pad, inner = " " * indent * _level, " " * indent * (_level + 1)
    if isinstance(value, Mapping) and value:
        items = [
            f"{inner}{json.dumps(str(k))}: {dumps(v, indent, _level + 1)}" for k, v in value.items()
        ]
        return "{\n" + ",\n".join(items) + f"\n{pad}}}"
    if isinstance(value, (list, tuple)) and value:
        if not any(isinstance(v, (Mapping, list, tuple)) for v in value):
            return json.dumps(list(value))
        items = [f"{inner}{dumps(v, indent, _level + 1)}" for v in value]
        return "[\n" + ",\n".join(items) + f"\n{pad}]"
    return json.dumps(value)
