"""Fashion-MNIST from its IDX files (e.g. Debian's ``dataset-fashion-mnist``)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from mlf_jax.data.idx import read_idx
from mlf_jax.data.source import ArraySource

__all__ = [
    "DEFAULT_DIR",
    "FILES",
    "MEAN",
    "STD",
    "CLASSES",
    "DatasetNotFoundError",
    "find_files",
    "load",
    "normalize",
]

#: Where Debian's ``dataset-fashion-mnist`` package puts the files.
DEFAULT_DIR = "/usr/share/datasets/fashion-mnist"

#: IDX files per split: (images, labels). Each may also be uncompressed (no ``.gz``).
FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}

#: Pixel mean and standard deviation of the training set (pixels in [0, 1]).
MEAN, STD = 0.2860, 0.3530

CLASSES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)  # fmt: skip


class DatasetNotFoundError(FileNotFoundError):
    """A data set's files are not where they were looked for."""


def find_files(data_dir: str | os.PathLike, split: str) -> tuple[Path, Path]:
    """Paths of the (images, labels) IDX files of ``split`` in ``data_dir``.

    Accepts the ``.gz`` files or their uncompressed versions.

    Raises:
      ValueError: for an unknown split.
      DatasetNotFoundError: naming the directory, the expected files and how to get them.
    """
    if split not in FILES:
        raise ValueError(f"unknown split {split!r}; expected one of {sorted(FILES)}")
    found = []
    for name in FILES[split]:
        candidates = [Path(data_dir) / name, Path(data_dir) / name.removesuffix(".gz")]
        path = next((p for p in candidates if p.is_file()), None)
        if path is None:
            expected = ", ".join(n for pair in FILES.values() for n in pair)
            raise DatasetNotFoundError(
                f"Fashion-MNIST file {name} not found in {os.fspath(data_dir)!r}. Expected the "
                f"IDX files {expected} (or the same without .gz) in that directory. On Debian "
                "or Ubuntu: `sudo apt-get install dataset-fashion-mnist` (installs them in "
                f"{DEFAULT_DIR}); or download them from "
                "github.com/zalandoresearch/fashion-mnist and pass their directory as data_dir."
            )
        found.append(path)
    return found[0], found[1]


def load(data_dir: str | os.PathLike = DEFAULT_DIR, split: str = "train") -> ArraySource:
    """Fashion-MNIST ``split`` as uint8 images ``[N, 28, 28, 1]`` and int32 labels ``[N]``."""
    images_path, labels_path = find_files(data_dir, split)
    images = read_idx(images_path)
    labels = read_idx(labels_path)
    if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
        raise ValueError(
            f"unexpected Fashion-MNIST shapes: images {images.shape} from {images_path}, "
            f"labels {labels.shape} from {labels_path}; expected [N, 28, 28] and [N]"
        )
    if labels.size and labels.max() >= len(CLASSES):
        raise ValueError(f"labels in {labels_path} exceed {len(CLASSES) - 1}")
    return ArraySource({"image": images[..., None], "label": labels.astype(np.int32)})


def normalize(images: np.ndarray) -> np.ndarray:
    """uint8 pixels -> float32 ``(x / 255 - MEAN) / STD``."""
    return ((images.astype(np.float32) / 255.0) - MEAN) / STD
