"""Per-example image augmentation in numpy, drawn from a given random generator.

Each function takes one example (a dict with an ``'image'`` ``[H, W, C]``) and a
``numpy.random.Generator`` and returns a new example, so that the loader's per-example
generator makes the augmentation reproducible and resumable.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["crop_flip", "random_crop_flip", "random_erase"]


def crop_flip(image: np.ndarray, dy: int, dx: int, flip: bool, padding: int) -> np.ndarray:
    """The ``[H, W, C]`` window at offset ``(dy, dx)`` of ``image`` zero-padded by
    ``padding`` on each side, mirrored left-right when ``flip``.

    ``out[r, k] = image[r + dy - padding, k + dx - padding]`` (0 outside the image), then
    ``out[:, k] <- out[:, W - 1 - k]`` when flipping.
    """
    height, width = image.shape[:2]
    pad = [(padding, padding), (padding, padding)] + [(0, 0)] * (image.ndim - 2)
    out = np.pad(image, pad)[dy : dy + height, dx : dx + width]
    return np.ascontiguousarray(out[:, ::-1] if flip else out)


def random_crop_flip(
    example: dict[str, np.ndarray], rng: np.random.Generator, padding: int
) -> dict[str, np.ndarray]:
    """Random crop (zero padding ``padding``) and horizontal flip of ``example['image']``.

    Draws from ``rng`` only: the offsets ``(dy, dx)``, each uniform in ``0..2 * padding``
    (``rng.integers(0, 2 * padding + 1, size=2)``), then the flip (``rng.random() < 0.5``).
    Other entries of the example pass through unchanged.
    """
    dy, dx = rng.integers(0, 2 * padding + 1, size=2)
    flip = bool(rng.random() < 0.5)
    return {**example, "image": crop_flip(example["image"], int(dy), int(dx), flip, padding)}


def random_erase(
    example: dict[str, np.ndarray],
    rng: np.random.Generator,
    probability: float = 0.5,
    area: tuple[float, float] = (0.02, 0.4),
    aspect: tuple[float, float] = (0.3, 1 / 0.3),
    attempts: int = 10,
) -> dict[str, np.ndarray]:
    """Random erasing (Zhong et al., 2020): with ``probability``, a rectangle of the
    image is replaced by uniform random pixel values.

    The rectangle covers a fraction of the image drawn uniformly from ``area``, with a
    height/width ratio drawn log-uniformly from ``aspect``; a draw that does not fit is
    redrawn, up to ``attempts`` times (then the image is left as it is). The fill is
    uniform over the dtype's range for integer images (``0..255`` for uint8) and over
    ``[0, 1)`` for float ones.
    """
    if rng.random() >= probability:
        return example
    image = example["image"]
    height, width = image.shape[:2]
    for _ in range(attempts):
        target = rng.uniform(*area) * height * width
        ratio = math.exp(rng.uniform(math.log(aspect[0]), math.log(aspect[1])))
        h = int(round(math.sqrt(target * ratio)))
        w = int(round(math.sqrt(target / ratio)))
        if 0 < h < height and 0 < w < width:
            top = int(rng.integers(0, height - h + 1))
            left = int(rng.integers(0, width - w + 1))
            shape = (h, w, *image.shape[2:])
            fill: np.ndarray
            if np.issubdtype(image.dtype, np.integer):
                info = np.iinfo(image.dtype)
                fill = rng.integers(info.min, info.max, size=shape, endpoint=True)
            else:
                fill = rng.random(shape)
            out = image.copy()
            out[top : top + h, left : left + w] = fill.astype(image.dtype)
            return {**example, "image": out}
    return example
