"""scikit-learn's 8x8 digits as a tiny data set, checked against sklearn's raw arrays."""

import numpy as np
import pytest
from sklearn.datasets import load_digits

from mlf_jax.data import digits
from mlf_jax.data.loader import make_loader


@pytest.fixture(scope="module")
def raw():
    d = load_digits()
    return d.images, d.target


def test_split_sizes_shapes_and_types():
    train, test = digits.load("train"), digits.load("test")
    assert len(train) == 1797 - 360 and len(test) == 360
    assert train.arrays["image"].shape == (1437, 8, 8, 1)
    assert train.arrays["image"].dtype == np.float32 and test.arrays["label"].dtype == np.int32


def test_values_are_the_raw_pixels_over_16_in_stored_order(raw):
    images, labels = raw
    train, test = digits.load("train"), digits.load("test")
    # The first 1437 examples train, the last 360 test; 0..16 -> 0..1.
    np.testing.assert_allclose(train.arrays["image"][..., 0], images[:1437] / 16, rtol=1e-7)
    np.testing.assert_allclose(test.arrays["image"][..., 0], images[1437:] / 16, rtol=1e-7)
    np.testing.assert_array_equal(train.arrays["label"], labels[:1437])
    np.testing.assert_array_equal(test.arrays["label"], labels[1437:])
    assert train.arrays["image"].min() == 0 and train.arrays["image"].max() == 1
    assert train[0]["image"][0, 2, 0] == images[0, 0, 2] / 16


def test_mean_and_std_are_those_of_the_training_split(raw):
    pixels = raw[0][:1437] / 16
    assert abs(pixels.mean() - digits.MEAN) < 1e-4 and abs(pixels.std() - digits.STD) < 1e-4


def test_normalize_by_the_formula():
    out = digits.normalize(np.array([0.0, 1.0, 0.5]))
    assert out.dtype == np.float32
    np.testing.assert_allclose(
        out, [-0.3054 / 0.3755, (1 - 0.3054) / 0.3755, (0.5 - 0.3054) / 0.3755], rtol=1e-6
    )


def test_unknown_split():
    with pytest.raises(ValueError, match="unknown split 'val'"):
        digits.load("val")


def test_digits_through_the_loader():
    batch = next(make_loader(digits.load("test"), batch_size=32, shuffle=True, seed=0))
    assert batch["image"].shape == (32, 8, 8, 1) and batch["label"].shape == (32,)
