"""Writes small files in the IDX format, as the real (Fashion-)MNIST files are laid out."""

import gzip
import struct
from pathlib import Path

import numpy as np


def write_idx(path: Path, array: np.ndarray, *, compress: bool = True) -> Path:
    """uint8 array -> IDX file: magic 0x00 0x00 0x08 rank, big-endian dims, data."""
    array = np.ascontiguousarray(array, np.uint8)
    raw = bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    raw += array.tobytes()
    with (gzip.open if compress else open)(path, "wb") as f:  # closed: the gzip trailer written
        f.write(raw)
    return path


def write_fashion_mnist(directory: Path, n_train: int, n_test: int, seed: int = 0) -> Path:
    """A tiny Fashion-MNIST directory: class c has a bright square at a class-dependent place."""
    rng = np.random.default_rng(seed)
    directory.mkdir(parents=True, exist_ok=True)
    for split, n in (("train", n_train), ("t10k", n_test)):
        labels = rng.integers(0, 10, n).astype(np.uint8)
        images = rng.integers(0, 40, (n, 28, 28)).astype(np.uint8)
        for i, c in enumerate(labels):
            r, q = divmod(int(c), 5)
            images[i, 4 + 12 * r : 12 + 12 * r, 1 + 5 * q : 6 + 5 * q] = 250
        write_idx(directory / f"{split}-images-idx3-ubyte.gz", images)
        write_idx(directory / f"{split}-labels-idx1-ubyte.gz", labels)
    return directory
