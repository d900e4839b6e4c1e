"""Bad input files (truncated, corrupt, empty, wrong shape) raise ``DataFileError`` naming
the file, for every loader. Each file is first written correctly in its real on-disk format
by the helpers of this package, then damaged byte by byte as described in each test."""

import gzip
import pickle
import re
import struct
import zlib

import numpy as np
import pytest
import tonic.dataset
import tonic.datasets

from mlf_jax.data import DataFileError, cifar10, fashion_mnist, neuromorphic, read_idx

from .cifar_files import pickled_batch, tiny_cifar, write_archive, write_folder
from .event_files import make_events, write_aedat4, write_gesture_sample, write_nmnist_sample
from .idx_files import write_fashion_mnist, write_idx


@pytest.fixture(autouse=True)
def no_download(monkeypatch):
    """Any attempt of tonic to download fails the test."""

    def fail(*args, **kwargs):
        raise AssertionError(f"tonic tried to download {args} {kwargs}")

    monkeypatch.setattr(tonic.dataset, "download_and_extract_archive", fail)


def raises_naming(path, match: str = ""):
    """``pytest.raises(DataFileError)`` whose message starts with ``path`` and then matches
    the regular expression ``match``."""
    return pytest.raises(DataFileError, match="^" + re.escape(str(path)) + ": .*" + match)


def truncate(path, keep: int) -> None:
    """Keeps the first ``keep`` bytes of ``path`` (``keep < 0``: drops the last ``-keep``)."""
    data = path.read_bytes()
    path.write_bytes(data[:keep])


# ---------------------------------------------------------------------------- the exception


def test_data_file_error_is_a_value_error_that_starts_with_the_path_and_pickles(tmp_path):
    e = DataFileError(tmp_path / "x.bin", "truncated")
    assert isinstance(e, ValueError)
    assert str(e) == f"{tmp_path / 'x.bin'}: truncated"
    assert (e.path, e.what) == (str(tmp_path / "x.bin"), "truncated")
    back = pickle.loads(pickle.dumps(e))
    assert type(back) is DataFileError and str(back) == str(e) and back.path == e.path


# ---------------------------------------------------------------------------- Fashion-MNIST


def test_truncated_gzip_idx_names_the_file(tmp_path):
    write_fashion_mnist(tmp_path, 6, 3)
    images = tmp_path / "train-images-idx3-ubyte.gz"
    truncate(images, -30)  # the gzip trailer (8 bytes) and the end of the deflate stream
    with raises_naming(images, "truncated gzip"):
        fashion_mnist.load(tmp_path, "train")
    with raises_naming(images):
        read_idx(images)


def test_gzip_idx_with_a_wrong_crc_names_the_file(tmp_path):
    write_fashion_mnist(tmp_path, 6, 3)
    labels = tmp_path / "train-labels-idx1-ubyte.gz"
    data = bytearray(labels.read_bytes())
    # A gzip member ends with CRC32 (little-endian) and ISIZE of the uncompressed data.
    content = gzip.decompress(bytes(data))
    assert struct.unpack("<II", data[-8:]) == (zlib.crc32(content), len(content))
    data[-8] ^= 0xFF  # the CRC's low byte
    labels.write_bytes(bytes(data))
    with raises_naming(labels, "CRC"):
        fashion_mnist.load(tmp_path, "train")


def test_32x32_images_are_not_fashion_mnist(tmp_path):
    write_fashion_mnist(tmp_path, 6, 3)
    images = write_idx(tmp_path / "train-images-idx3-ubyte.gz", np.zeros((6, 32, 32), np.uint8))
    with raises_naming(images, r"\(6, 32, 32\).*\[N, 28, 28\]"):
        fashion_mnist.load(tmp_path, "train")


def test_other_idx_types_and_ranks_are_not_fashion_mnist(tmp_path):
    write_fashion_mnist(tmp_path, 6, 3)
    # type byte 0x09 (int8) instead of 0x08 (uint8), shape [6, 28, 28]
    images = tmp_path / "t10k-images-idx3-ubyte"
    images.write_bytes(bytes([0, 0, 0x09, 3]) + struct.pack(">3I", 3, 28, 28) + bytes(3 * 784))
    (tmp_path / "t10k-images-idx3-ubyte.gz").unlink()
    with raises_naming(images, "int8"):
        fashion_mnist.load(tmp_path, "test")
    # labels of rank 2
    labels = write_idx(tmp_path / "train-labels-idx1-ubyte.gz", np.zeros((6, 1), np.uint8))
    with raises_naming(labels, r"\(6, 1\)"):
        fashion_mnist.load(tmp_path, "train")


def test_labels_out_of_range_or_of_another_count_name_the_labels_file(tmp_path):
    write_fashion_mnist(tmp_path, 6, 3)
    labels = write_idx(tmp_path / "train-labels-idx1-ubyte.gz", np.array([0, 1, 2, 10, 4, 5]))
    with raises_naming(labels, "label 10 outside 0..9"):
        fashion_mnist.load(tmp_path, "train")
    write_idx(labels, np.arange(5))
    with raises_naming(labels, "5 labels but .*train-images-idx3-ubyte.gz holds 6 images"):
        fashion_mnist.load(tmp_path, "train")


# ---------------------------------------------------------------------------- CIFAR10


def test_truncated_cifar_archive_names_the_archive(tmp_path):
    archive = write_archive(tmp_path / "cifar-10-python.tar.gz", tiny_cifar())
    size = archive.stat().st_size
    for keep in (size // 3, size - 20):  # inside a member; in the gzip trailer
        truncate(archive, keep)
        with raises_naming(archive, "truncated or corrupt"):
            cifar10.load(tmp_path, "train")  # found in its directory
        with raises_naming(archive, "truncated or corrupt"):
            cifar10.load(archive, "test")  # given itself
        write_archive(archive, tiny_cifar())


def test_cifar_archive_with_a_wrong_crc_names_the_archive(tmp_path):
    archive = write_archive(tmp_path / "cifar-10-python.tar.gz", tiny_cifar())
    data = bytearray(archive.read_bytes())
    data[-8] ^= 0xFF  # low byte of the gzip member's CRC32 (then 4 bytes of ISIZE)
    archive.write_bytes(bytes(data))
    with raises_naming(archive, "CRC"):
        cifar10.load(archive, "test")


def test_truncated_pickled_batch_names_the_file(tmp_path):
    folder = write_folder(tmp_path, tiny_cifar())
    truncate(folder / "data_batch_3", 1000)
    with raises_naming(folder / "data_batch_3", "truncated"):
        cifar10.load(folder, "train")


def test_cifar_pixels_beyond_255_are_refused_not_wrapped(tmp_path):
    images, labels = tiny_cifar()["test_batch"]
    rows = np.zeros((len(labels), 3072), np.int64)
    rows[0, 5] = 300  # would become 300 - 256 = 44 as uint8
    folder = write_folder(tmp_path, tiny_cifar())
    (folder / "test_batch").write_bytes(
        pickle.dumps({b"data": rows, b"labels": [int(y) for y in labels]}, protocol=2)
    )
    with raises_naming(folder / "test_batch", "0..255"):
        cifar10.load(folder, "test")
    (folder / "test_batch").write_bytes(pickled_batch(images, [11] + list(labels[1:]), "t"))
    with raises_naming(folder / "test_batch", "labels outside 0..9"):
        cifar10.load(folder, "test")


# ---------------------------------------------------------------------------- event data


def four_events():
    return make_events(x=[1, 2, 3, 4], y=[1, 2, 3, 4], p=[0, 1, 0, 1], t=[0, 1000, 2000, 3000])


def test_truncated_aedat4_names_the_file(tmp_path):
    events = make_events(np.arange(40) % 128, np.arange(40) % 128, np.arange(40) % 2, np.arange(40))
    for name in tonic.datasets.CIFAR10DVS.classes:
        write_aedat4(tmp_path / "CIFAR10DVS" / name / f"cifar10_{name}_0.aedat4", events)
    bad = tmp_path / "CIFAR10DVS" / "bird" / "cifar10_bird_0.aedat4"
    truncate(bad, -10)  # inside the last packet
    with raises_naming(bad, "truncated or corrupt"):
        neuromorphic.load("cifar10_dvs", tmp_path, "test", tmp_path / "c", progress=False)


def test_truncated_nmnist_bin_names_the_file(tmp_path):
    write_nmnist_sample(tmp_path, "train", 1, "00001", four_events())
    bad = write_nmnist_sample(tmp_path, "train", 2, "00002", four_events())
    truncate(bad, 4 * 5 - 2)  # 18 bytes: 3 events and 3 bytes of the fourth
    with raises_naming(bad, "18 bytes, not a multiple of the 5 bytes"):
        neuromorphic.load("nmnist", tmp_path, "train", tmp_path / "c", progress=False)


def test_empty_nmnist_bin_is_an_error_not_a_blank_sample(tmp_path):
    write_nmnist_sample(tmp_path, "train", 1, "00001", four_events())
    empty = write_nmnist_sample(tmp_path, "train", 2, "00002", four_events()[:0])
    assert empty.stat().st_size == 0
    with raises_naming(empty, "empty"):
        neuromorphic.load("nmnist", tmp_path, "train", tmp_path / "c", progress=False)


def test_nmnist_of_only_overflow_records_holds_no_events(tmp_path):
    # y = 240 marks a timestamp-overflow record, not an event: the file decodes to 0 events.
    path = tmp_path / "NMNIST" / "Test" / "3" / "00001.bin"
    path.parent.mkdir(parents=True)
    path.write_bytes(bytes([0, 240, 0, 0, 0]))
    with raises_naming(path, "holds no events"):
        neuromorphic.load("nmnist", tmp_path, "test", tmp_path / "c", progress=False)


def test_events_outside_the_sensor_name_the_file(tmp_path):
    bad = write_nmnist_sample(tmp_path, "test", 4, "00001", make_events([40], [3], [1], [5]))
    with raises_naming(bad, "outside the sensor of width 34"):
        neuromorphic.load("nmnist", tmp_path, "test", tmp_path / "c", progress=False)


@pytest.mark.parametrize("damage", ["truncated", "empty", "no events", "one column"])
def test_bad_gesture_npy_names_the_file(tmp_path, damage):
    write_gesture_sample(tmp_path, "train", 1, "led", 0, four_events())
    bad = write_gesture_sample(tmp_path, "train", 2, "led", 3, four_events())
    if damage == "truncated":
        truncate(bad, -8)  # the last int64 of the [4, 4] array
        match = "truncated or corrupt"
    elif damage == "empty":
        truncate(bad, 0)
        match = "empty"
    elif damage == "no events":
        np.save(bad, np.zeros((0, 4), np.int64))
        match = "holds no events"
    else:
        np.save(bad, np.arange(4, dtype=np.int64))
        match = "truncated or corrupt"
    with raises_naming(bad, match):
        neuromorphic.load("dvs_gesture", tmp_path, "train", tmp_path / "c", progress=False)
