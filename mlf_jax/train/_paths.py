"""Local or remote: the one question about a path that the writers need to ask."""

from __future__ import annotations

import os

__all__ = ["is_remote"]


def is_remote(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a URI of a remote store (``gs://``, ``s3://``, ...)."""
    return "://" in os.fspath(path)
