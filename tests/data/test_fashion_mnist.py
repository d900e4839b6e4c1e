"""Fashion-MNIST loading: tiny files in the real format, and the real data when installed."""

import os

import numpy as np
import pytest

from mlf_jax.data import ArraySource, fashion_mnist

from .idx_files import write_fashion_mnist


def test_load_tiny_directory(tmp_path):
    write_fashion_mnist(tmp_path, 20, 7)
    train = fashion_mnist.load(tmp_path, "train")
    test = fashion_mnist.load(tmp_path, "test")
    assert len(train) == 20 and len(test) == 7
    ex = train[3]
    assert ex["image"].shape == (28, 28, 1) and ex["image"].dtype == np.uint8
    assert ex["label"].dtype == np.int32


def test_missing_files_name_the_path_and_how_to_get_them(tmp_path):
    with pytest.raises(fashion_mnist.DatasetNotFoundError) as e:
        fashion_mnist.load(tmp_path / "nowhere", "train")
    msg = str(e.value)
    assert str(tmp_path / "nowhere") in msg
    assert "train-images-idx3-ubyte.gz" in msg and "apt-get install dataset-fashion-mnist" in msg


def test_unknown_split(tmp_path):
    with pytest.raises(ValueError, match="unknown split 'val'"):
        fashion_mnist.load(tmp_path, "val")


def test_normalize():
    x = np.array([0, 255], np.uint8)
    np.testing.assert_allclose(
        fashion_mnist.normalize(x), [-0.2860 / 0.3530, (1 - 0.2860) / 0.3530], rtol=1e-6
    )


@pytest.mark.skipif(
    not os.path.isdir(fashion_mnist.DEFAULT_DIR),
    reason=f"real Fashion-MNIST not installed in {fashion_mnist.DEFAULT_DIR} (make data)",
)
def test_real_fashion_mnist_has_the_published_sizes_and_balance():
    train = fashion_mnist.load(split="train")
    test = fashion_mnist.load(split="test")
    assert len(train) == 60_000 and len(test) == 10_000
    np.testing.assert_array_equal(np.bincount(train.arrays["label"]), [6000] * 10)
    np.testing.assert_array_equal(np.bincount(test.arrays["label"]), [1000] * 10)
    mean = train.arrays["image"].mean() / 255
    assert abs(mean - fashion_mnist.MEAN) < 1e-3


def test_array_source_needs_arrays_of_one_length():
    with pytest.raises(ValueError, match="one common length"):
        ArraySource({"x": np.arange(3), "y": np.arange(4)})
