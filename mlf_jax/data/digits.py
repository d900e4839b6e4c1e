"""scikit-learn's 8x8 handwritten digits: a tiny data set for smoke runs (no download).

1797 grey images of 8x8 pixels with values 0..16 and labels 0..9, shipped inside
scikit-learn (``sklearn.datasets.load_digits``). Split, in the stored order: the first
1437 examples train, the last :data:`NUM_TEST` (360) test.
"""

from __future__ import annotations

import numpy as np

from mlf_jax.data.source import ArraySource

__all__ = ["MEAN", "NUM_TEST", "SPLITS", "STD", "arrays", "load", "normalize"]

#: Examples at the end of the stored order that form the test split.
NUM_TEST = 360
SPLITS = ("train", "test")

#: Pixel mean and standard deviation of the training split (pixels in [0, 1]).
MEAN, STD = 0.3054, 0.3755


def arrays(split: str) -> tuple[np.ndarray, np.ndarray]:
    """``split`` as float32 images ``[N, 8, 8, 1]`` in [0, 1] (pixel / 16), int32 labels.

    Raises:
      ValueError: for an unknown split.
    """
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; expected one of {list(SPLITS)}")
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = (digits.images / 16.0).astype(np.float32)[..., None]
    labels = digits.target.astype(np.int32)
    part = slice(None, -NUM_TEST) if split == "train" else slice(-NUM_TEST, None)
    return images[part], labels[part]


def load(split: str = "train") -> ArraySource:
    """``split`` as an :class:`ArraySource` of ``'image'`` ``[8, 8, 1]`` and ``'label'``."""
    images, labels = arrays(split)
    return ArraySource({"image": images, "label": labels})


def normalize(images: np.ndarray) -> np.ndarray:
    """Pixels in [0, 1] -> float32 ``(x - MEAN) / STD``."""
    return (np.asarray(images, np.float32) - MEAN) / STD
