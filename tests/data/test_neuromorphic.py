"""Event-camera data sets: tiny directories in tonic's real layouts and formats, file -> frames,
the cache, the splits, missing data; and the real N-MNIST sample through tonic's reader."""

import os
import re
import shutil

import numpy as np
import pytest
import tonic.dataset
import tonic.datasets
import tonic.datasets.cifar10dvs
import tonic.io

from mlf_jax.data import ArraySource, neuromorphic
from mlf_jax.data.errors import DatasetNotFoundError
from mlf_jax.data.neuromorphic import Preprocessing

from .event_files import (
    SHARED_ENV,
    make_events,
    shared_events_dir,
    write_aedat4,
    write_gesture_sample,
    write_nmnist_sample,
)

NMNIST_SAMPLE = shared_events_dir() / "sample_nmnist.bin"
needs_nmnist_sample = pytest.mark.skipif(
    not NMNIST_SAMPLE.is_file(),
    reason=f"real N-MNIST sample {NMNIST_SAMPLE} absent (no ../shared beside the clone; set "
    f"{SHARED_ENV} to the directory holding data/events/)",
)

CIFAR_CLASSES = list(tonic.datasets.CIFAR10DVS.classes)


@pytest.fixture(autouse=True)
def no_download(monkeypatch):
    """Any attempt of tonic to download fails the test."""

    def fail(*args, **kwargs):
        raise AssertionError(f"tonic tried to download {args} {kwargs}")

    monkeypatch.setattr(tonic.dataset, "download_and_extract_archive", fail)


def count_conversions(monkeypatch):
    calls = []
    real = neuromorphic.convert

    def convert(raw, pre, **kwargs):
        calls.append((raw.name, raw.split, pre))
        return real(raw, pre, **kwargs)

    monkeypatch.setattr(neuromorphic, "convert", convert)
    return calls


# ---------------------------------------------------------------------------- DVS128 Gesture


def ms(*values):
    return np.array(values, np.int64) * 1000


def gesture_dir(root):
    """Train: users 1 and 2 (two lightings); test: user 24. The hand-built sample is user 1,
    fluorescent, label 4; the others are marked by their number of events at pixel (0, 0)."""
    hand = make_events(
        x=[0, 3, 4, 127, 64, 9],
        y=[0, 3, 0, 127, 64, 9],
        p=[1, 0, 1, 1, 0, 1],
        t=ms(5000, 5029, 5030, 6199, 6200, 9000),  # starts at 5 s: relative 0, 29, 30, 1199, ...
    )
    write_gesture_sample(root, "train", 1, "fluorescent", 4, hand)
    marked = {
        ("train", 1, "fluorescent", 10): 2,
        ("train", 1, "led", 0): 3,
        ("train", 2, "natural", 7): 4,
        ("test", 24, "led", 1): 5,
        ("test", 24, "led", 9): 6,
    }
    for (split, user, light, label), n in marked.items():
        write_gesture_sample(
            root, split, user, light, label, make_events([0] * n, [0] * n, [0] * n, ms(*range(n)))
        )
    return root


def test_gesture_file_to_frames_by_hand(tmp_path):
    gesture_dir(tmp_path)
    train = neuromorphic.load_dvs_gesture(tmp_path, "train", tmp_path / "cache", progress=False)
    assert isinstance(train, ArraySource) and len(train) == 4
    images, labels = train.arrays["image"], train.arrays["label"]
    assert images.shape == (4, 40, 32, 32, 2) and images.dtype == np.uint16
    assert labels.dtype == np.int32
    # sorted by user, lighting, label: user01_fluorescent/{4,10}, user01_led/0, user02_natural/7
    np.testing.assert_array_equal(labels, [4, 10, 0, 7])
    np.testing.assert_array_equal(images[1:].sum(axis=(1, 2, 3, 4)), [2, 3, 4])
    want = np.zeros((40, 32, 32, 2), np.uint16)
    want[0, 0, 0, 1] = 1  # 0 ms
    want[0, 0, 0, 0] = 1  # 29 ms, (3, 3) // 4 = (0, 0)
    want[1, 0, 1, 1] = 1  # 30 ms: the next 30 ms bin; x = 4 -> 1
    want[39, 31, 31, 1] = 1  # 1199 ms: the last bin; (127, 127) -> (31, 31)
    # 1200 ms (the end of the 1.2 s window) and 4000 ms are dropped
    np.testing.assert_array_equal(images[0], want)

    test = neuromorphic.load_dvs_gesture(tmp_path, "test", tmp_path / "cache", progress=False)
    np.testing.assert_array_equal(test.arrays["label"], [1, 9])
    np.testing.assert_array_equal(test.arrays["image"][:, 0, 0, 0, 0], [5, 6])


def test_gesture_uses_tonics_layout_and_reader(tmp_path):
    gesture_dir(tmp_path)
    raw = neuromorphic.raw_events("dvs_gesture", tmp_path, "train")
    assert isinstance(raw.dataset, tonic.datasets.DVSGesture)
    assert sorted(raw.dataset.users) == [1, 1, 1, 2]
    events, label = raw[0]
    assert label == 4 and events.dtype == tonic.datasets.DVSGesture.dtype
    np.testing.assert_array_equal(events["t"][:3], ms(5000, 5029, 5030))  # ms -> us by tonic
    # the data set folder itself is accepted too
    same = neuromorphic.raw_events("dvs_gesture", tmp_path / "DVSGesture", "train")
    assert same.paths == raw.paths


def test_cache_is_written_once_and_reused(tmp_path, monkeypatch, capsys):
    gesture_dir(tmp_path)
    calls = count_conversions(monkeypatch)
    first = neuromorphic.load("dvs_gesture", tmp_path, "train")  # default cache dir
    assert "events -> frames" in capsys.readouterr().err  # the tqdm progress bar
    cached = sorted((tmp_path / "mlf_jax_cache").glob("*.npz"))
    assert len(cached) == 1 and cached[0].name.startswith("dvs_gesture_train_T40_30000us_32x32_")
    second = neuromorphic.load("dvs_gesture", tmp_path, "train")
    assert len(calls) == 1  # the second call read the cache
    for key in ("image", "label"):
        np.testing.assert_array_equal(first.arrays[key], second.arrays[key])
        assert first.arrays[key].dtype == second.arrays[key].dtype


def test_cache_with_other_parameters_or_files_is_not_reused(tmp_path, monkeypatch):
    gesture_dir(tmp_path)
    calls = count_conversions(monkeypatch)
    cache = tmp_path / "cache"
    a = neuromorphic.load("dvs_gesture", tmp_path, "train", cache, progress=False)
    other = Preprocessing(n_bins=4, bin_us=100_000, size=(16, 16))
    b = neuromorphic.load(
        "dvs_gesture", tmp_path, "train", cache, preprocessing=other, progress=False
    )
    assert len(calls) == 2 and b.arrays["image"].shape == (4, 4, 16, 16, 2)
    paths = sorted(cache.glob("*.npz"))
    assert len(paths) == 2 and any("_T4_100000us_16x16_" in p.name for p in paths)
    # a file under the expected name but written with other parameters is converted again
    path_a = next(p for p in paths if "_T40_" in p.name)
    path_b = next(p for p in paths if "_T4_" in p.name)
    shutil.copyfile(path_b, path_a)
    again = neuromorphic.load("dvs_gesture", tmp_path, "train", cache, progress=False)
    assert len(calls) == 3
    np.testing.assert_array_equal(again.arrays["image"], a.arrays["image"])
    # a corrupt cache is converted again, with a warning
    path_a.write_bytes(b"not a zip")
    with pytest.warns(UserWarning, match="unreadable cache"):
        neuromorphic.load("dvs_gesture", tmp_path, "train", cache, progress=False)
    assert len(calls) == 4
    # new files change the fingerprint: no stale cache
    write_gesture_sample(tmp_path, "train", 3, "led", 2, make_events([1], [1], [1], ms(0)))
    c = neuromorphic.load("dvs_gesture", tmp_path, "train", cache, progress=False)
    assert len(calls) == 5 and len(c) == 5


# ---------------------------------------------------------------------------- CIFAR10-DVS


def cifar_dir(root, indices=(0, 2, 10)):
    """Each class folder holds recordings ``cifar10_<class>_<k>.aedat4``; recording k has k + 1
    events at sensor pixel (127, 127) at the start, then events at 99.999 ms, 100 ms and 5 s."""
    for c, name in enumerate(CIFAR_CLASSES):
        for k in indices:
            n = k + 1
            t0 = 10**9 + 1000 * c  # absolute device timestamps, as DV records them
            events = make_events(
                x=[127] * n + [3 * c, 0, 0],
                y=[127] * n + [0, 0, 0],
                p=[1] * n + [0, 1, 1],
                t=[t0 + i for i in range(n)] + [t0 + 99_999, t0 + 100_000, t0 + 5_000_000],
            )
            write_aedat4(
                root / "CIFAR10DVS" / name / f"cifar10_{name}_{k}.aedat4", events, packet_events=2
            )
    return root


def test_cifar10_dvs_files_to_frames_and_split(tmp_path, monkeypatch):
    cifar_dir(tmp_path)
    decoded = []  # every recording is decoded by tonic's reader (the `aedat` package)

    def read_aedat4(path):
        decoded.append(os.path.basename(path))
        return tonic.io.read_aedat4(path)

    monkeypatch.setattr(tonic.datasets.cifar10dvs, "read_aedat4", read_aedat4)
    train = neuromorphic.load_cifar10_dvs(tmp_path, "train", tmp_path / "c", progress=False)
    test = neuromorphic.load_cifar10_dvs(tmp_path, "test", tmp_path / "c", progress=False)
    assert len(decoded) == 30 and len(set(decoded)) == 30
    # per class, the first floor(0.9 * 3) = 2 recordings in natural order (0, 2) train, 10 test
    assert len(train) == 20 and len(test) == 10
    np.testing.assert_array_equal(train.arrays["label"], np.repeat(np.arange(10), 2))
    np.testing.assert_array_equal(test.arrays["label"], np.arange(10))
    images = train.arrays["image"]
    assert images.shape == (20, 10, 42, 42, 2) and images.dtype == np.uint16
    np.testing.assert_array_equal(images[:, 0, 41, 41, 1], [1, 3] * 10)  # k + 1 at (41, 41)
    np.testing.assert_array_equal(test.arrays["image"][:, 0, 41, 41, 1], [11] * 10)
    for i, c in enumerate(np.repeat(np.arange(10), 2)):
        frame = images[i]
        assert frame[9, 0, (3 * c * 42) // 128, 0] == 1  # 99.999 ms: the last 10 ms bin
        assert frame.sum() == frame[0, 41, 41, 1] + 1  # 100 ms and 5 s are outside the window
    raw = neuromorphic.raw_events("cifar10_dvs", tmp_path, "test")
    assert isinstance(raw.dataset, tonic.datasets.CIFAR10DVS)
    assert [p.name for p in raw.paths[:2]] == [
        "cifar10_airplane_10.aedat4",
        "cifar10_automobile_10.aedat4",
    ]


def test_cifar10_dvs_needs_every_class_folder(tmp_path):
    write_aedat4(tmp_path / "CIFAR10DVS" / "airplane" / "a.aedat4", make_events([0], [0], [0], [0]))
    with pytest.raises(DatasetNotFoundError) as e:
        neuromorphic.load_cifar10_dvs(tmp_path, "train", tmp_path / "c")
    msg = str(e.value)
    assert str(tmp_path) in msg and "automobile" in msg and "<class>/*.aedat4" in msg


# ---------------------------------------------------------------------------- N-MNIST


def decode_nmnist(raw: bytes) -> np.ndarray:
    """The N-MNIST format decoded one event at a time: byte 0 x, byte 1 y, byte 2 bit 7
    polarity, bits 22..0 of bytes 2-4 the timestamp in microseconds."""
    x, y, p, t = [], [], [], []
    for i in range(0, len(raw), 5):
        b = raw[i : i + 5]
        assert b[1] != 240, "this decoder does not handle timestamp-overflow records"
        x.append(b[0])
        y.append(b[1])
        p.append(b[2] >> 7)
        t.append(((b[2] & 0x7F) << 16) | (b[3] << 8) | b[4])
    return make_events(x, y, p, t)


@needs_nmnist_sample
def test_real_nmnist_sample_through_tonics_reader():
    raw = NMNIST_SAMPLE.read_bytes()
    assert len(raw) % 5 == 0
    ours = decode_nmnist(raw)
    theirs = tonic.io.read_mnist_file(str(NMNIST_SAMPLE), dtype=tonic.datasets.NMNIST.dtype)
    assert len(theirs) == len(ours) == len(raw) // 5
    for name in ("x", "y", "p", "t"):
        np.testing.assert_array_equal(theirs[name], ours[name])
    assert theirs["x"].max() < 34 and theirs["y"].max() < 34  # 34x34 sensor
    assert set(np.unique(theirs["p"])) == {0, 1}
    assert np.all(np.diff(theirs["t"]) >= 0)
    assert 0.25e6 < theirs["t"][-1] - theirs["t"][0] < 0.35e6  # three saccades, ~300 ms


@needs_nmnist_sample
def test_real_nmnist_sample_file_to_frames(tmp_path):
    """The real file, copied into a tmp NMNIST layout, gives the counts of its decoded events."""
    for split, label in (("train", 7), ("test", 3)):
        folder = tmp_path / "NMNIST" / ("Train" if split == "train" else "Test") / str(label)
        folder.mkdir(parents=True)
        shutil.copyfile(NMNIST_SAMPLE, folder / "00001.bin")
    train = neuromorphic.load_nmnist(tmp_path, "train", tmp_path / "c", progress=False)
    assert train.arrays["image"].shape == (1, 10, 34, 34, 2)
    np.testing.assert_array_equal(train.arrays["label"], [7])
    ev = decode_nmnist(NMNIST_SAMPLE.read_bytes())
    rel = ev["t"] - ev["t"].min()
    frames = train.arrays["image"][0]
    for k in range(10):  # 30 ms bins from the first event
        inside = (rel >= 30_000 * k) & (rel < 30_000 * (k + 1))
        for p in (0, 1):
            sel = inside & (ev["p"] == p)
            want = np.zeros((34, 34), np.int64)
            np.add.at(want, (ev["y"][sel], ev["x"][sel]), 1)
            np.testing.assert_array_equal(frames[k, :, :, p], want)
    assert frames.sum() == np.count_nonzero(rel < 300_000) < len(ev)  # the tail is dropped
    test = neuromorphic.load_nmnist(tmp_path, "test", tmp_path / "c", progress=False)
    np.testing.assert_array_equal(test.arrays["image"], train.arrays["image"])
    np.testing.assert_array_equal(test.arrays["label"], [3])


def test_nmnist_hand_written_files(tmp_path):
    events = make_events(x=[0, 33, 5], y=[0, 33, 6], p=[1, 0, 1], t=[100, 30_100, 400_000])
    write_nmnist_sample(tmp_path, "train", 2, "00010", events)
    write_nmnist_sample(tmp_path, "train", 2, "00002", events[:1])
    write_nmnist_sample(tmp_path, "train", 0, "00005", events[1:2])
    train = neuromorphic.load_nmnist(tmp_path, "train", tmp_path / "c", progress=False)
    np.testing.assert_array_equal(train.arrays["label"], [0, 2, 2])
    img = train.arrays["image"]
    assert img[0, 0, 33, 33, 0] == 1 and img[0].sum() == 1  # a lone event opens its window
    assert img[1, 0, 0, 0, 1] == 1 and img[1].sum() == 1
    assert img[2, 0, 0, 0, 1] == 1 and img[2, 1, 33, 33, 0] == 1 and img[2].sum() == 2


# ---------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    "name, expected",
    [
        ("dvs_gesture", "ibmGestureTrain/user01_fluorescent/0.npy"),
        ("cifar10_dvs", "<class>/*.aedat4"),
        ("nmnist", "Train/<digit>/*.bin"),
    ],
)
def test_missing_data_names_the_directory_and_the_layout(tmp_path, name, expected):
    where = tmp_path / "nowhere"
    with pytest.raises(DatasetNotFoundError) as e:
        neuromorphic.load(name, where, "train")
    msg = str(e.value)
    assert str(where) in msg and expected in msg and "tonic" in msg
    # the data set folder exists but the split's files do not
    folder = tmp_path / neuromorphic.SPECS[name].folder
    folder.mkdir()
    with pytest.raises(DatasetNotFoundError, match=re.escape(str(folder))):
        neuromorphic.load(name, tmp_path, "test")


def test_names_and_aliases_are_the_registrys(tmp_path):
    from mlf_jax.data import registry

    assert not hasattr(neuromorphic, "canonical_name")  # one: the registry's
    assert not hasattr(neuromorphic, "DATASETS")  # one table of names: the registry's
    assert set(neuromorphic.SPECS) == {n for n, i in registry.DATASETS.items() if i.event}
    assert registry.canonical_name("gesture") == "dvs_gesture"
    assert registry.canonical_name("DVS-Gesture") == "dvs_gesture"
    assert registry.canonical_name("DVS128-Gesture") == "dvs_gesture"
    assert registry.canonical_name("cifar10dvs") == "cifar10_dvs"
    assert registry.canonical_name("N-MNIST") == "nmnist"
    with pytest.raises(ValueError, match="registry.canonical_name"):
        neuromorphic.load("gesture", tmp_path)  # the loaders take the one name


def test_unknown_name_or_split(tmp_path):
    with pytest.raises(ValueError, match="unknown data set 'mnist'"):
        neuromorphic.load("mnist", tmp_path)
    with pytest.raises(ValueError, match="unknown split 'val'"):
        neuromorphic.load("nmnist", tmp_path, "val")
