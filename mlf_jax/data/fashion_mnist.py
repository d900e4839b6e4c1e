"""Fashion-MNIST from its IDX files (e.g. Debian's ``dataset-fashion-mnist``)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from mlf_jax.data import augment as _augment
from mlf_jax.data.errors import DataFileError
from mlf_jax.data.idx import read_idx
from mlf_jax.data.source import ArraySource

__all__ = [
    "DEFAULT_DIR",
    "FILES",
    "MEAN",
    "STD",
    "CLASSES",
    "SIZE",
    "PADDING",
    "DataFileError",
    "DatasetNotFoundError",
    "augment",
    "check_images",
    "check_labels",
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

#: Height and width of every image.
SIZE = 28

#: Zero padding of the random crop in :func:`augment`.
PADDING = 2

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
    """Fashion-MNIST ``split`` as uint8 images ``[N, 28, 28, 1]`` and int32 labels ``[N]``.

    Raises:
      ValueError: for an unknown split.
      DatasetNotFoundError: when a file is missing (see :func:`find_files`).
      DataFileError: (a ``ValueError``) naming the file when it is truncated or corrupt, or
        its IDX header does not describe ``[N, 28, 28]`` uint8 images or ``[N]`` uint8
        labels in ``0..9`` (one per image).
    """
    images_path, labels_path = find_files(data_dir, split)
    images = read_idx(images_path)
    labels = read_idx(labels_path)
    check_images(images_path, images)
    check_labels(labels_path, labels, len(images), images_path)
    return ArraySource({"image": images[..., None], "label": labels.astype(np.int32)})


def check_images(path: str | os.PathLike, images: np.ndarray) -> None:
    """Raises :class:`DataFileError` naming ``path`` unless ``images`` is uint8
    ``[N, 28, 28]`` (the IDX header's type and dimensions)."""
    if images.dtype != np.uint8 or images.ndim != 3 or images.shape[1:] != (SIZE, SIZE):
        raise DataFileError(
            path,
            f"IDX header says {images.dtype} images of shape {images.shape}; Fashion-MNIST "
            f"images are uint8 [N, {SIZE}, {SIZE}]",
        )


def check_labels(
    path: str | os.PathLike, labels: np.ndarray, n_images: int, images_path: str | os.PathLike
) -> None:
    """Raises :class:`DataFileError` naming ``path`` unless ``labels`` is uint8 ``[n_images]``
    with values in ``0..9``."""
    if labels.dtype != np.uint8 or labels.ndim != 1:
        raise DataFileError(
            path,
            f"IDX header says {labels.dtype} labels of shape {labels.shape}; Fashion-MNIST "
            "labels are uint8 [N]",
        )
    if len(labels) != n_images:
        raise DataFileError(
            path, f"holds {len(labels)} labels but {os.fspath(images_path)} holds {n_images} images"
        )
    if labels.size and labels.max() >= len(CLASSES):
        raise DataFileError(path, f"label {labels.max()} outside 0..{len(CLASSES) - 1}")


def normalize(images: np.ndarray) -> np.ndarray:
    """uint8 pixels -> float32 ``(x / 255 - MEAN) / STD``."""
    return ((images.astype(np.float32) / 255.0) - MEAN) / STD


def augment(
    example: dict[str, np.ndarray],
    rng: np.random.Generator,
    padding: int = PADDING,
    erase: float = 0.0,
) -> dict[str, np.ndarray]:
    """Random crop (zero padding ``padding``) and horizontal flip of the uint8 image, then,
    with probability ``erase``, random erasing of a rectangle
    (:func:`mlf_jax.data.augment.random_erase`); every draw from ``rng``."""
    example = _augment.random_crop_flip(example, rng, padding)
    return _augment.random_erase(example, rng, erase) if erase else example
