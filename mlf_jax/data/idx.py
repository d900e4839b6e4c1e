"""Reader of the IDX format of (Fashion-)MNIST (``*-ubyte`` and ``*-ubyte.gz``)."""

from __future__ import annotations

import gzip
import os
import zlib

import numpy as np

from mlf_jax.data.errors import DataFileError

__all__ = ["read_idx"]

_DTYPES: dict[int, np.dtype | type[np.generic]] = {
    0x08: np.uint8,
    0x09: np.int8,
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}


def _read_bytes(path: str | os.PathLike) -> bytes:
    """The content of ``path``, gunzipped when its name ends in ``.gz``.

    Reading to the end checks the gzip stream's length and CRC32 trailer.

    Raises:
      FileNotFoundError: when ``path`` does not exist.
      DataFileError: naming ``path`` when it is not gzip data, or truncated or corrupt.
    """
    if not os.fspath(path).endswith(".gz"):
        with open(path, "rb") as f:
            return f.read()
    with open(path, "rb") as raw, gzip.open(raw, "rb") as f:
        try:
            return f.read()
        except EOFError as e:
            raise DataFileError(path, f"truncated gzip file ({e})") from e
        except (OSError, zlib.error) as e:  # BadGzipFile is an OSError
            raise DataFileError(path, f"corrupt gzip file ({e})") from e


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Reads an IDX file (optionally gzip-compressed) into a numpy array.

    Layout: two zero bytes, a type byte, a rank byte, ``rank`` big-endian
    uint32 dimensions, then the data in C order.

    Raises:
      DataFileError: (a ``ValueError``) naming ``path`` when the gzip stream is truncated or
        corrupt, the header is malformed, or the data size does not match it.
    """
    raw = _read_bytes(path)
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _DTYPES:
        raise DataFileError(path, f"not an IDX file (bad magic number {raw[:4].hex()})")
    dtype = np.dtype(_DTYPES[raw[2]])
    rank = raw[3]
    header = 4 + 4 * rank
    if len(raw) < header:
        raise DataFileError(path, "truncated IDX header")
    shape = tuple(int(d) for d in np.frombuffer(raw, ">u4", count=rank, offset=4))
    expected = int(np.prod(shape)) * dtype.itemsize
    if len(raw) - header != expected:
        raise DataFileError(
            path,
            f"IDX header says shape {shape} ({expected} bytes) but the file holds "
            f"{len(raw) - header} bytes of data",
        )
    return np.frombuffer(raw, dtype, offset=header).reshape(shape).astype(dtype.newbyteorder("="))
