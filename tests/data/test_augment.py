"""Random erasing and Fashion-MNIST's augmentation (the crop/flip window itself is tested
against a hand-written window in test_cifar10.py)."""

import numpy as np
import pytest

from mlf_jax.data import augment, fashion_mnist


def _erased(image: np.ndarray, out: np.ndarray) -> np.ndarray:
    return np.any(out != image, axis=-1) if image.ndim == 3 else out != image


def test_random_erase_replaces_one_rectangle_within_the_area_and_aspect_ranges():
    # a float image of -1: the fill is in [0, 1), so every erased pixel differs
    image = -np.ones((28, 28, 1), np.float32)
    for seed in range(200):
        out = augment.random_erase({"image": image}, np.random.default_rng(seed), 1.0)["image"]
        mask = _erased(image, out)
        if not mask.any():  # every attempt missed the image: possible, but rarely
            continue
        rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
        h, w = len(rows), len(cols)
        assert mask.sum() == h * w  # a filled rectangle ...
        assert rows[-1] - rows[0] + 1 == h and cols[-1] - cols[0] + 1 == w  # ... in one piece
        # area and aspect as drawn, up to rounding each side to whole pixels
        area = h * w / 28**2
        assert 0.02 * (1 - 1 / 3) ** 2 / 1.2 <= area <= 0.4 * 1.2, (h, w)
        assert 0.3 / 1.6 <= h / w <= 1.6 / 0.3, (h, w)
        assert np.all((out[mask] >= 0) & (out[mask] < 1))
        assert np.all(out[~mask] == -1)


def test_random_erase_probability():
    image = np.zeros((28, 28, 1), np.uint8)
    n = 2000
    erased = sum(
        bool(np.any(augment.random_erase({"image": image}, np.random.default_rng(s), 0.3)["image"]))
        for s in range(n)
    )
    # binomial(2000, 0.3 * P(fits within 10 attempts) ~ 0.3): 5 standard deviations
    assert abs(erased - 0.3 * n) < 5 * (n * 0.3 * 0.7) ** 0.5, erased
    assert augment.random_erase({"image": image}, np.random.default_rng(0), 0.0)["image"] is image


def test_random_erase_fills_uint8_images_over_the_whole_range():
    image = np.zeros((28, 28, 1), np.uint8)
    values = np.concatenate(
        [
            augment.random_erase({"image": image}, np.random.default_rng(s), 1.0)["image"].ravel()
            for s in range(50)
        ]
    )
    assert values.dtype == np.uint8 and values.max() >= 250


@pytest.mark.parametrize("erase", [0.0, 0.5])
def test_fashion_mnist_augment_is_reproducible_and_keeps_the_format(erase):
    image = np.random.default_rng(1).integers(0, 256, (28, 28, 1), dtype=np.uint8)
    example = {"image": image, "label": np.int32(3)}
    a = fashion_mnist.augment(example, np.random.default_rng(9), erase=erase)
    b = fashion_mnist.augment(example, np.random.default_rng(9), erase=erase)
    np.testing.assert_array_equal(a["image"], b["image"])
    assert a["image"].shape == (28, 28, 1) and a["image"].dtype == np.uint8
    assert a["label"] == 3


def test_fashion_mnist_augment_without_erasing_is_a_padded_crop_and_flip():
    image = np.arange(1, 28 * 28 + 1).reshape(28, 28, 1)
    out = fashion_mnist.augment({"image": image}, np.random.default_rng(4))["image"]
    rng = np.random.default_rng(4)
    dy, dx = rng.integers(0, 5, size=2)
    flip = rng.random() < 0.5
    padded = np.pad(image, [(2, 2), (2, 2), (0, 0)])[dy : dy + 28, dx : dx + 28]
    np.testing.assert_array_equal(out, padded[:, ::-1] if flip else padded)
