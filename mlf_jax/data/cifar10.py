"""CIFAR10 from the python archive, its extracted folder, or a prepared TFDS data_dir.

All three give uint8 images ``[N, 32, 32, 3]`` (HWC, RGB) and int32 labels ``[N]``:

- ``archive``: ``cifar-10-python.tar.gz`` (www.cs.toronto.edu/~kriz/cifar.html), read
  directly from the tar. Members ``cifar-10-batches-py/data_batch_1`` .. ``_5`` (train, in
  this order) and ``test_batch``, each a pickled dict with ``b'data'`` (N x 3072 uint8,
  channel-major: 1024 red, 1024 green, 1024 blue values, each 32x32 row-major) and
  ``b'labels'`` (N ints).
- ``folder``: the extracted ``cifar-10-batches-py/`` with the same files.
- ``tfds``: ``tfds.data_source('cifar10', ...)`` on a TFDS data_dir where cifar10 was
  prepared in the ``array_record`` format (e.g. ``tfds build cifar10
  --file_format=array_record``), read lazily without TensorFlow. Decoding its PNG images
  needs ``opencv-python`` or ``pillow``.

Augmentation (the paper's, training only): :func:`augment` = random 32x32 crop of the image
zero-padded by 4 on each side, then a horizontal flip with probability 1/2; then
:func:`normalize` with the per-channel :data:`MEAN` and :data:`STD` on [0, 1] pixels.
"""

from __future__ import annotations

import io
import json
import os
import pickle
import tarfile
import zlib
from pathlib import Path
from typing import Any

import numpy as np

from mlf_jax.data import augment as _augment
from mlf_jax.data.errors import DataFileError, DatasetNotFoundError
from mlf_jax.data.source import ArraySource

__all__ = [
    "ARCHIVE",
    "CLASSES",
    "FOLDER",
    "MEAN",
    "PADDING",
    "SOURCES",
    "SPLITS",
    "STD",
    "TFDS_NAME",
    "DataFileError",
    "TfdsSource",
    "augment",
    "crop_flip",
    "decode_batch",
    "find",
    "load",
    "load_archive",
    "load_folder",
    "load_tfds",
    "normalize",
    "read_batch",
]

ARCHIVE = "cifar-10-python.tar.gz"
FOLDER = "cifar-10-batches-py"
TFDS_NAME = "cifar10"
#: Pickled batch files per split, concatenated in this order.
SPLITS = {
    "train": tuple(f"data_batch_{i}" for i in range(1, 6)),
    "test": ("test_batch",),
}
SOURCES = ("auto", "folder", "archive", "tfds")

#: Per-channel (R, G, B) mean of [0, 1] pixels (ref. code).
MEAN = (0.4914, 0.4822, 0.4465)
#: Per-channel (R, G, B) standard deviation of [0, 1] pixels (ref. code).
STD = (0.2023, 0.1994, 0.2010)
#: Zero padding on each side before the random 32x32 crop.
PADDING = 4

CLASSES = (
    "airplane", "automobile", "bird", "cat", "deer",
    "dog", "frog", "horse", "ship", "truck",
)  # fmt: skip

_SIZE = 32
_LAYOUTS = (
    f"(folder) {FOLDER}/ holding {', '.join(SPLITS['train'] + SPLITS['test'])}, given as the "
    f"folder itself or its parent; (archive) {ARCHIVE}, given as the file or its directory; "
    f"(tfds) a TFDS data_dir holding {TFDS_NAME}/<version>/dataset_info.json prepared with "
    f"`tfds build {TFDS_NAME} --file_format=array_record`"
)


# --- The python version's pickled batches ---------------------------------------------


class _BatchUnpickler(pickle.Unpickler):
    """Unpickles only what CIFAR batches hold: dicts, lists, bytes, ints, numpy arrays."""

    _ALLOWED = {
        ("_codecs", "encode"),  # bytes in protocol-2 pickles written by Python 3
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
    }

    def find_class(self, module: str, name: str):
        if (module, name) not in self._ALLOWED:
            raise pickle.UnpicklingError(
                f"refusing to unpickle {module}.{name}: a CIFAR batch holds only dicts, "
                "lists, bytes, ints and numpy arrays"
            )
        return super().find_class(module, name)


def read_batch(f, name: str = "<batch>") -> tuple[np.ndarray, np.ndarray]:
    """One pickled batch (an open binary file) -> (uint8 ``[N, 32, 32, 3]``, int32 ``[N]``).

    Uses ``encoding='bytes'`` as the files were written by Python 2; ``name`` is the file
    (or ``archive:member``) named by errors.

    Raises:
      DataFileError: naming ``name`` when the pickle is truncated or corrupt, or its arrays
        are not a CIFAR10 batch (see :func:`decode_batch`).
    """
    try:
        batch = _BatchUnpickler(f, encoding="bytes").load()
    except (pickle.UnpicklingError, EOFError, ValueError) as e:
        raise DataFileError(name, f"not a CIFAR10 python batch, truncated or corrupt ({e})") from e
    return decode_batch(batch, name)


def decode_batch(batch: dict, name: str = "<batch>") -> tuple[np.ndarray, np.ndarray]:
    """``{b'data': [N, 3072] uint8, b'labels': [N]}`` -> HWC images and int32 labels.

    Row ``i`` of ``data`` holds channel ``c``, pixel ``(r, k)`` at ``c * 1024 + r * 32 + k``.

    Raises:
      DataFileError: naming ``name`` unless ``data`` is ``[N, 3072]`` of integers in 0..255
        and ``labels`` ``[N]`` integers in 0..9.
    """
    if not isinstance(batch, dict) or b"data" not in batch or b"labels" not in batch:
        keys = sorted(batch) if isinstance(batch, dict) else type(batch).__name__
        raise DataFileError(name, f"expected a dict with b'data' and b'labels', got {keys}")
    data = np.asarray(batch[b"data"])
    labels = np.asarray(batch[b"labels"])
    if data.ndim != 2 or data.shape[1] != 3 * _SIZE * _SIZE or labels.shape != data.shape[:1]:
        raise DataFileError(
            name, f"data {data.shape} and labels {labels.shape}; expected [N, 3072] and [N]"
        )
    if data.dtype != np.uint8 and not (
        data.dtype.kind in "iu" and (data.size == 0 or (data.min() >= 0 and data.max() <= 255))
    ):
        raise DataFileError(name, f"pixels of dtype {data.dtype} are not integers in 0..255")
    if labels.size and (
        labels.dtype.kind not in "iu" or labels.min() < 0 or labels.max() >= len(CLASSES)
    ):
        raise DataFileError(name, f"labels outside 0..{len(CLASSES) - 1}")
    images = data.astype(np.uint8).reshape(-1, 3, _SIZE, _SIZE).transpose(0, 2, 3, 1)
    return np.ascontiguousarray(images), labels.astype(np.int32)


def _concat(parts: list[tuple[np.ndarray, np.ndarray]]) -> ArraySource:
    images = np.concatenate([p[0] for p in parts])
    labels = np.concatenate([p[1] for p in parts])
    return ArraySource({"image": images, "label": labels})


def _check_split(split: str) -> None:
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; expected one of {sorted(SPLITS)}")


#: What reading a truncated or corrupt (compressed) tar archive raises.
_ARCHIVE_ERRORS = (tarfile.TarError, EOFError, zlib.error, OSError)


def load_archive(path: str | os.PathLike, split: str) -> ArraySource:
    """``split`` read from the members of ``cifar-10-python.tar.gz`` at ``path``.

    Reads the archive in one sequential pass (no extraction to disk), to its end, so that
    the gzip trailer's length and CRC32 are checked.

    Raises:
      DataFileError: naming ``path`` when the archive is truncated or corrupt, or naming
        ``path:member`` for a malformed batch.
      DatasetNotFoundError: when a batch is not in the archive.
    """
    _check_split(split)
    if not Path(path).is_file():
        raise DatasetNotFoundError(f"{os.fspath(path)!r} not found; expected {ARCHIVE}")
    wanted = {f"{FOLDER}/{name}": name for name in SPLITS[split]}
    raw: dict[str, bytes] = {}
    try:
        with tarfile.open(path, "r:*") as tar:
            for member in tar:
                if member.name in wanted and member.isfile():
                    extracted = tar.extractfile(member)
                    assert extracted is not None  # a regular file always has a reader
                    raw[wanted[member.name]] = extracted.read()
            while tar.fileobj.read(1 << 20):  # to the end: gzip checks its trailer there
                pass
    except _ARCHIVE_ERRORS as e:
        raise DataFileError(path, f"truncated or corrupt tar archive ({e})") from e
    missing = [f"{FOLDER}/{name}" for name in SPLITS[split] if name not in raw]
    if missing:
        raise DatasetNotFoundError(
            f"{os.fspath(path)!r} has no member {', '.join(missing)}; expected the CIFAR10 "
            f"python archive ({ARCHIVE}) with {FOLDER}/"
            f"{{{', '.join(SPLITS['train'] + SPLITS['test'])}}}"
        )
    return _concat(
        [read_batch(io.BytesIO(raw[name]), f"{path}:{FOLDER}/{name}") for name in SPLITS[split]]
    )


def load_folder(path: str | os.PathLike, split: str) -> ArraySource:
    """``split`` read from the extracted ``cifar-10-batches-py`` folder at ``path``."""
    _check_split(split)
    parts = []
    for name in SPLITS[split]:
        file = Path(path) / name
        if not file.is_file():
            raise DatasetNotFoundError(
                f"{os.fspath(file)!r} not found; expected the extracted CIFAR10 python "
                f"folder {FOLDER}/ with {', '.join(SPLITS['train'] + SPLITS['test'])}"
            )
        with open(file, "rb") as f:
            parts.append(read_batch(f, os.fspath(file)))
    return _concat(parts)


# --- TFDS ------------------------------------------------------------------------------


class TfdsSource:
    """A ``tfds.data_source`` of cifar10 as ``{'image': uint8 [32, 32, 3], 'label': int32}``.

    Random access, read lazily from the array_record files. An integer index gives one
    example; a slice or an integer array gives stacked examples (like ``ArraySource``).
    """

    def __init__(self, data_source):
        self.data_source = data_source

    def __len__(self) -> int:
        return len(self.data_source)

    @staticmethod
    def _convert(example: dict[str, Any]) -> dict[str, Any]:
        return {
            "image": np.asarray(example["image"], np.uint8),
            "label": np.int32(example["label"]),
        }

    def __getitem__(self, index) -> dict[str, np.ndarray]:
        if isinstance(index, (int, np.integer)):
            return self._convert(self.data_source[int(index)])
        keys = np.arange(len(self))[index] if isinstance(index, slice) else np.asarray(index)
        examples = [self._convert(self.data_source[int(k)]) for k in keys.reshape(-1)]
        return {
            "image": np.stack([e["image"] for e in examples]).reshape(
                (*keys.shape, _SIZE, _SIZE, 3)
            ),
            "label": np.array([e["label"] for e in examples], np.int32).reshape(keys.shape),
        }

    def __repr__(self) -> str:
        # grain compares this repr when restoring an iterator's state.
        return f"TfdsSource({self.data_source!r})"


def _tfds_version_dirs(data_dir: str | os.PathLike) -> list:
    from etils import epath

    root = epath.Path(data_dir) / TFDS_NAME
    if not root.is_dir():
        return []
    return sorted(p for p in root.iterdir() if (p / "dataset_info.json").is_file())


def load_tfds(data_dir: str | os.PathLike, split: str) -> TfdsSource:
    """``split`` from a TFDS data_dir where cifar10 was prepared as array_record.

    Never downloads. Reads the first example at once, so that a missing image decoder
    (``opencv-python`` or ``pillow``) shows here.

    Raises:
      DatasetNotFoundError: when ``data_dir`` holds no prepared cifar10.
      ValueError: when it was prepared in another file format than array_record.
    """
    _check_split(split)
    versions = _tfds_version_dirs(data_dir)
    if not versions:
        raise DatasetNotFoundError(
            f"no prepared TFDS {TFDS_NAME} in {os.fspath(data_dir)!r}: expected "
            f"{TFDS_NAME}/<version>/dataset_info.json there (`tfds build {TFDS_NAME} "
            f"--data_dir=... --file_format=array_record`)"
        )
    formats = {
        os.fspath(v): json.loads((v / "dataset_info.json").read_text()).get(
            "fileFormat", "tfrecord"
        )
        for v in versions
    }
    if not set(formats.values()) & {"array_record", "parquet"}:
        raise ValueError(
            f"{TFDS_NAME} in {os.fspath(data_dir)!r} is stored as {formats}, formats without "
            f"random access; prepare it again with `tfds build {TFDS_NAME} "
            "--file_format=array_record`"
        )
    import tensorflow_datasets as tfds

    source = TfdsSource(tfds.data_source(TFDS_NAME, split=split, data_dir=data_dir, download=False))
    if len(source):
        first = source[0]
        if first["image"].shape != (_SIZE, _SIZE, 3) or not 0 <= first["label"] < len(CLASSES):
            raise DataFileError(
                data_dir,
                f"the first {TFDS_NAME} {split} example has an image of shape "
                f"{first['image'].shape} and label {first['label']}; expected [32, 32, 3] and "
                f"0..{len(CLASSES) - 1}",
            )
    return source


# --- Picking a source ------------------------------------------------------------------


def _is_tar(path: Path) -> bool:
    """Whether ``path`` starts like a (compressed) tar archive.

    Raises:
      DataFileError: naming ``path`` when it is compressed data that ends or breaks before
        the first tar header (a truncated or corrupt archive).
    """
    try:
        return tarfile.is_tarfile(path)
    except _ARCHIVE_ERRORS as e:
        raise DataFileError(path, f"truncated or corrupt tar archive ({e})") from e


def find(data_dir: str | os.PathLike, source: str = "auto") -> tuple[str, str]:
    """``(kind, path)`` of the CIFAR10 copy in ``data_dir`` that ``load`` reads.

    ``auto`` tries, in order: the extracted folder (``data_dir`` itself or
    ``data_dir/cifar-10-batches-py``), the archive (``data_dir`` itself or
    ``data_dir/cifar-10-python.tar.gz``), a prepared TFDS data_dir.

    Raises:
      ValueError: for an unknown ``source``.
      DatasetNotFoundError: naming ``data_dir`` and the layouts expected.
    """
    if source not in SOURCES:
        raise ValueError(f"unknown source {source!r}; expected one of {list(SOURCES)}")
    where = Path(data_dir)
    if source in ("auto", "folder"):
        for folder in (where, where / FOLDER):
            if (folder / SPLITS["train"][0]).is_file() or (folder / "test_batch").is_file():
                return "folder", os.fspath(folder)
    if source in ("auto", "archive"):
        for archive in (where, where / ARCHIVE):
            if archive.is_file() and _is_tar(archive):
                return "archive", os.fspath(archive)
    if source in ("auto", "tfds") and _tfds_version_dirs(data_dir):
        return "tfds", os.fspath(data_dir)
    wanted = "one of the layouts" if source == "auto" else f"the {source} layout of"
    raise DatasetNotFoundError(
        f"CIFAR10 not found in {os.fspath(data_dir)!r}: expected {wanted} {_LAYOUTS}"
    )


def load(
    data_dir: str | os.PathLike, split: str = "train", *, source: str = "auto"
) -> ArraySource | TfdsSource:
    """CIFAR10 ``split`` (``'train'`` or ``'test'``) from ``data_dir``.

    Args:
      data_dir: the folder, the archive, their directory, or a TFDS data_dir.
      split: ``'train'`` (50000 examples, batches 1..5 in order) or ``'test'`` (10000).
      source: ``'auto'`` (see :func:`find`), ``'folder'``, ``'archive'`` or ``'tfds'``.

    Returns:
      An ``ArraySource`` (folder, archive) or a lazy ``TfdsSource`` (tfds) of examples
      ``{'image': uint8 [32, 32, 3], 'label': int32}``. TFDS stores the examples in its
      own shuffled order.

    Raises:
      ValueError: for an unknown split or source.
      DataFileError: (a ``ValueError``) naming the file when it is truncated, corrupt, or
        holds arrays of other shapes than CIFAR10's.
      DatasetNotFoundError: when ``data_dir`` holds no CIFAR10 in the layout(s) asked for.
    """
    _check_split(split)
    kind, path = find(data_dir, source)
    if kind == "folder":
        return load_folder(path, split)
    if kind == "archive":
        return load_archive(path, split)
    return load_tfds(path, split)


# --- Augmentation and normalisation ----------------------------------------------------


def crop_flip(image: np.ndarray, dy: int, dx: int, flip: bool, padding: int = PADDING):
    """:func:`mlf_jax.data.augment.crop_flip` with CIFAR10's default padding (4)."""
    return _augment.crop_flip(image, dy, dx, flip, padding)


def augment(
    example: dict[str, np.ndarray], rng: np.random.Generator, padding: int = PADDING
) -> dict[str, np.ndarray]:
    """Random crop (zero padding ``padding``) and horizontal flip of ``example['image']``
    (:func:`mlf_jax.data.augment.random_crop_flip`)."""
    return _augment.random_crop_flip(example, rng, padding)


def normalize(images: np.ndarray) -> np.ndarray:
    """uint8 ``[..., 3]`` RGB pixels -> float32 ``(x / 255 - MEAN[c]) / STD[c]``."""
    x = np.asarray(images).astype(np.float32) / 255.0
    return (x - np.asarray(MEAN, np.float32)) / np.asarray(STD, np.float32)
