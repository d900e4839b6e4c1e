"""CIFAR10 from tiny files in the real formats: python archive, its folder, a TFDS data_dir.

The TFDS test prepares cifar10 in a temporary data_dir with TFDS's own cifar10 builder,
fed (instead of its download) with the *binary* version of the same tiny batches, which
TFDS parses with its own code, independent of ours. What it covers: TFDS's real example
serialisation and array_record writing, then ``tfds.data_source`` reading that data_dir
without TensorFlow, our detection of the layout and our conversion of its records, and
that the images and labels equal those we read from the python archive. What it does
not: the real 60000-image data, and, where TensorFlow, OpenCV and PIL are not installed
(as in this venv), the PNG codec, which a minimal codec from ``cifar_files`` stands in
for (see ``cifar_files.prepare_tfds``).
"""

import pickle

import numpy as np
import pytest

from mlf_jax.data import cifar10
from mlf_jax.data.loader import make_loader

from .cifar_files import (
    TRAIN,
    decode_png,
    encode_png,
    have_image_decoder,
    patch_image_decoder,
    pickled_batch,
    prepare_tfds,
    py2_dumps,
    tiny_cifar,
    to_rows,
    write_archive,
    write_folder,
)


def _expected(batches, split):
    names = TRAIN if split == "train" else ("test_batch",)
    images = np.concatenate([batches[n][0] for n in names])
    labels = np.concatenate([batches[n][1] for n in names])
    return images, labels


@pytest.fixture(scope="module")
def batches():
    return tiny_cifar()


# --- Reading ------------------------------------------------------------------------------


def test_pixel_layout_by_hand(tmp_path):
    # Row layout of the python batches: channel c, pixel (r, k) at c * 1024 + r * 32 + k.
    batches = tiny_cifar(sizes=(2, 1, 1, 1, 1), n_test=1)
    spots = [(0, 0, 0, 11), (0, 31, 1, 22), (5, 7, 2, 33), (31, 0, 0, 44), (31, 31, 2, 55)]
    data = np.zeros((2, 3072), np.uint8)
    for r, k, c, v in spots:
        data[1, c * 1024 + r * 32 + k] = v
    raw = {"batch_label": "training batch 1 of 5", "labels": [3, 9], "data": data}
    write_folder(tmp_path, batches)
    (tmp_path / "cifar-10-batches-py" / "data_batch_1").write_bytes(py2_dumps(raw))
    images = cifar10.load(tmp_path, "train").arrays["image"]
    assert images.shape == (6, 32, 32, 3) and images.dtype == np.uint8
    expected = np.zeros((32, 32, 3), np.uint8)
    for r, k, c, v in spots:
        expected[r, k, c] = v
    np.testing.assert_array_equal(images[1], expected)
    assert not images[0].any()


def test_helper_rows_match_the_hand_layout():
    images = np.random.default_rng(1).integers(0, 256, (2, 32, 32, 3), dtype=np.uint8)
    rows = to_rows(images)
    for i, r, k, c in [(0, 0, 0, 0), (1, 3, 17, 1), (0, 31, 30, 2), (1, 12, 5, 2)]:
        assert rows[i, c * 1024 + r * 32 + k] == images[i, r, k, c]


@pytest.mark.parametrize("layout", ["archive", "archive_file", "folder", "folder_parent"])
def test_archive_and_folder_give_the_batches_in_order(tmp_path, batches, layout):
    if layout.startswith("archive"):
        path = write_archive(tmp_path / "cifar-10-python.tar.gz", batches)
        data_dir = path if layout == "archive_file" else tmp_path
    else:
        folder = write_folder(tmp_path, batches)
        data_dir = folder if layout == "folder" else tmp_path
    assert cifar10.find(data_dir)[0] == layout.split("_")[0]
    for split, n in (("train", 12), ("test", 4)):
        source = cifar10.load(data_dir, split)
        images, labels = _expected(batches, split)
        assert len(source) == n
        np.testing.assert_array_equal(source.arrays["image"], images)
        np.testing.assert_array_equal(source.arrays["label"], labels)
        assert source.arrays["label"].dtype == np.int32
        assert source[0]["image"].shape == (32, 32, 3)


@pytest.mark.parametrize("protocol", [2, 4])
def test_pickles_written_by_python_3_also_load(tmp_path, batches, protocol):
    folder = write_folder(tmp_path, batches)
    batch = pickled_batch(*batches["test_batch"], "t", protocol=protocol)
    (folder / "test_batch").write_bytes(batch)
    np.testing.assert_array_equal(
        cifar10.load(folder, "test").arrays["image"], batches["test_batch"][0]
    )


def test_folder_is_preferred_and_sources_can_be_forced(tmp_path, batches):
    write_archive(tmp_path / "cifar-10-python.tar.gz", batches)
    write_folder(tmp_path, batches)
    assert cifar10.find(tmp_path) == ("folder", str(tmp_path / "cifar-10-batches-py"))
    assert cifar10.find(tmp_path, "archive") == (
        "archive",
        str(tmp_path / "cifar-10-python.tar.gz"),
    )
    with pytest.raises(cifar10.DatasetNotFoundError, match="the tfds layout"):
        cifar10.load(tmp_path, "train", source="tfds")


def test_missing_data_names_the_path_and_the_layouts(tmp_path):
    with pytest.raises(cifar10.DatasetNotFoundError) as e:
        cifar10.load(tmp_path / "nowhere", "train")
    assert isinstance(e.value, FileNotFoundError)
    msg = str(e.value)
    assert str(tmp_path / "nowhere") in msg
    for needle in ("cifar-10-batches-py", "cifar-10-python.tar.gz", "data_batch_5", "tfds build"):
        assert needle in msg


def test_missing_batch_file_and_archive_member(tmp_path, batches):
    folder = write_folder(tmp_path / "f", batches)
    (folder / "data_batch_4").unlink()
    with pytest.raises(cifar10.DatasetNotFoundError, match="data_batch_4"):
        cifar10.load(folder, "train")
    np.testing.assert_array_equal(
        cifar10.load(folder, "test").arrays["label"], batches["test_batch"][1]
    )
    partial = {k: v for k, v in batches.items() if k != "test_batch"}
    archive = write_archive(tmp_path / "a" / "cifar-10-python.tar.gz", partial)
    with pytest.raises(cifar10.DatasetNotFoundError, match="cifar-10-batches-py/test_batch"):
        cifar10.load(archive, "test")


def test_bad_arguments_and_malformed_batches(tmp_path, batches):
    folder = write_folder(tmp_path, batches)
    with pytest.raises(ValueError, match="unknown split 'val'"):
        cifar10.load(folder, "val")
    with pytest.raises(ValueError, match="unknown source 'zip'"):
        cifar10.load(folder, "train", source="zip")
    (folder / "test_batch").write_bytes(
        pickle.dumps({b"data": np.zeros((2, 100), np.uint8), b"labels": [0, 1]})
    )
    with pytest.raises(ValueError, match=r"\[N, 3072\]"):
        cifar10.load(folder, "test")
    (folder / "test_batch").write_bytes(pickle.dumps({b"labels": [0]}))
    with pytest.raises(ValueError, match="b'data'"):
        cifar10.load(folder, "test")


def test_pickles_naming_other_globals_are_refused(tmp_path, batches):
    class Evil:
        def __reduce__(self):
            return (print, ("unpickled!",))

    folder = write_folder(tmp_path, batches)
    (folder / "test_batch").write_bytes(pickle.dumps({b"data": Evil(), b"labels": []}, 2))
    with pytest.raises(ValueError, match="refusing to unpickle .*print"):
        cifar10.load(folder, "test")


# --- TFDS -------------------------------------------------------------------------------


def test_png_helper_round_trip():
    image = np.random.default_rng(2).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    np.testing.assert_array_equal(decode_png(encode_png(image)), image)


@pytest.fixture(scope="module")
def tfds_dir(tmp_path_factory, batches):
    root = tmp_path_factory.mktemp("tfds")
    return prepare_tfds(root / "data", root / "download", batches)


@pytest.fixture
def image_decoder():
    if have_image_decoder():
        yield
    else:
        with patch_image_decoder():
            yield


def test_tfds_data_source_gives_the_same_examples(tfds_dir, batches, tmp_path, image_decoder):
    assert (tfds_dir / "cifar10").is_dir()
    assert cifar10.find(tfds_dir) == ("tfds", str(tfds_dir))
    archive = write_archive(tmp_path / "cifar-10-python.tar.gz", batches)
    for split in ("train", "test"):
        source = cifar10.load(tfds_dir, split)
        assert isinstance(source, cifar10.TfdsSource) and "cifar10" in repr(source)
        reference = cifar10.load(archive, split, source="archive")
        assert len(source) == len(reference)
        # TFDS stores its examples shuffled; its 'id' ("train_00007") is the original index.
        ids = [int(source.data_source[i]["id"].decode().split("_")[1]) for i in range(len(source))]
        assert sorted(ids) == list(range(len(source)))
        for i, j in enumerate(ids):
            ex = source[i]
            assert ex["image"].dtype == np.uint8 and ex["label"].dtype == np.int32
            np.testing.assert_array_equal(ex["image"], reference.arrays["image"][j])
            assert ex["label"] == reference.arrays["label"][j]
    stacked = source[np.array([[0, 2], [3, 1]])]
    assert stacked["image"].shape == (2, 2, 32, 32, 3) and stacked["label"].shape == (2, 2)
    np.testing.assert_array_equal(stacked["image"][1, 0], source[3]["image"])
    np.testing.assert_array_equal(source[1:3]["label"], [source[1]["label"], source[2]["label"]])


def test_tfds_source_feeds_the_loader(tfds_dir, image_decoder):
    source = cifar10.load(tfds_dir, "train", source="tfds")
    batch = next(make_loader(source, batch_size=4, shuffle=True, seed=0, transform=cifar10.augment))
    assert batch["image"].shape == (4, 32, 32, 3) and batch["image"].dtype == np.uint8
    assert batch["label"].shape == (4,)


@pytest.mark.skipif(have_image_decoder(), reason="OpenCV or PIL is installed")
def test_tfds_without_an_image_decoder_says_what_to_install(tfds_dir):
    with pytest.raises(ImportError, match="pillow"):
        cifar10.load(tfds_dir, "train", source="tfds")


def test_tfds_prepared_as_tfrecord_is_a_clear_error(tmp_path):
    version = tmp_path / "cifar10" / "3.0.2"
    version.mkdir(parents=True)
    (version / "dataset_info.json").write_text('{"name": "cifar10", "fileFormat": "tfrecord"}')
    with pytest.raises(ValueError, match="file_format=array_record"):
        cifar10.load(tmp_path, "train")


# --- Augmentation and normalisation -----------------------------------------------------


def _crop_flip_by_hand(image, dy, dx, flip, p=4):
    h, w, c = image.shape
    out = np.zeros_like(image)
    for r in range(h):
        for k in range(w):
            src_k = (w - 1 - k) if flip else k
            i, j = r + dy - p, src_k + dx - p
            if 0 <= i < h and 0 <= j < w:
                out[r, k] = image[i, j]
    return out


def test_crop_flip_is_a_shifted_window_with_zeros_from_the_border():
    image = np.arange(1, 8 * 8 * 2 + 1, dtype=np.int32).reshape(8, 8, 2)
    for dy, dx, flip in [(0, 0, False), (8, 8, False), (4, 4, False), (4, 4, True), (1, 6, True)]:
        np.testing.assert_array_equal(
            cifar10.crop_flip(image, dy, dx, flip), _crop_flip_by_hand(image, dy, dx, flip)
        )
    # Offsets (0, 0): the image moves 4 down and 4 right; zeros enter at the top and left.
    out = cifar10.crop_flip(image, 0, 0, False)
    assert not out[:4].any() and not out[:, :4].any()
    np.testing.assert_array_equal(out[4:, 4:], image[:4, :4])
    np.testing.assert_array_equal(cifar10.crop_flip(image, 4, 4, True), image[:, ::-1])


def _params_of(out, image):
    """(dy, dx, flip) recovered from an augmented image with unique pixel values."""
    v = out[16, 16, 0]  # always inside the image for shifts of at most 4
    (i,), (j,), _ = np.nonzero(image == v)
    flip = out[16, 17, 0] == image[i, j - 1, 0]
    k = 31 - 16 if flip else 16
    return i - 16 + 4, j - k + 4, bool(flip)


def test_augment_draws_crop_and_flip_from_the_rng_only():
    image = (np.arange(32 * 32 * 3, dtype=np.int32) + 1).reshape(32, 32, 3)
    example = {"image": image, "label": np.int32(7)}
    a = cifar10.augment(example, np.random.default_rng(5))
    b = cifar10.augment(example, np.random.default_rng(5))
    np.testing.assert_array_equal(a["image"], b["image"])
    assert a["label"] == 7 and a["image"].shape == (32, 32, 3)
    rng = np.random.default_rng(0)
    seen = []
    for _ in range(600):
        out = cifar10.augment(example, rng)["image"]
        dy, dx, flip = _params_of(out, image)
        np.testing.assert_array_equal(out, _crop_flip_by_hand(image, dy, dx, flip))
        seen.append((dy, dx, flip))
    dys, dxs, flips = zip(*seen, strict=True)
    assert set(dys) == set(range(9)) and set(dxs) == set(range(9))
    assert 0.42 < np.mean(flips) < 0.58  # 600 fair coin flips: sd 0.02
    assert len(set(seen)) > 120  # of the 162 (dy, dx, flip); distinct draws, not one stuck


def test_augment_keeps_uint8():
    image = np.full((32, 32, 3), 200, np.uint8)
    out = cifar10.augment({"image": image}, np.random.default_rng(1))["image"]
    assert out.dtype == np.uint8 and set(np.unique(out)) <= {0, 200}


def test_normalize_by_the_formula():
    pixel = np.array([[0, 255, 128]], np.uint8)
    expected = [
        (0 - 0.4914) / 0.2023,
        (1 - 0.4822) / 0.1994,
        (128 / 255 - 0.4465) / 0.2010,
    ]
    out = cifar10.normalize(pixel)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out[0], expected, rtol=1e-6)
    batch = np.zeros((2, 32, 32, 3), np.uint8)
    np.testing.assert_allclose(
        cifar10.normalize(batch)[1, 5, 7],
        [-0.4914 / 0.2023, -0.4822 / 0.1994, -0.4465 / 0.2010],
        rtol=1e-6,
    )
