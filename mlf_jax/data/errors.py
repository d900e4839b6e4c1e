"""The errors of the data set readers: a data set not found, and a data file that is present
but unusable (shared by every data set)."""

from __future__ import annotations

import os

__all__ = ["DataFileError", "DatasetNotFoundError"]


class DatasetNotFoundError(FileNotFoundError):
    """A data set's files are not where they were looked for; the message names the place
    looked in, the files expected and how to get them."""


class DataFileError(ValueError):
    """A data file that exists but cannot be used: truncated, corrupt, empty, or holding
    arrays of the wrong shape or values.

    The message is ``"<path>: <what is wrong>"``, so it always starts with the file's path.

    Attributes:
      path: the file (for a member of an archive, ``"<archive>:<member>"``).
      what: what is wrong with it.
    """

    def __init__(self, path: str | os.PathLike, what: str):
        self.path = os.fspath(path)
        self.what = what
        super().__init__(f"{self.path}: {what}")

    def __reduce__(self):
        # Rebuilt from (path, what) when pickled, e.g. across worker processes.
        return type(self), (self.path, self.what)
