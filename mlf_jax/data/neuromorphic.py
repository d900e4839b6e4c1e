"""Event-camera data sets through tonic, binned into frames once (as the authors do) and cached.

Three data sets, each read from the on-disk layout of its ``tonic.datasets`` class (tonic's
``save_to`` directory; nothing is ever downloaded):

==============  ==========================================================  ==================
data set        layout under ``data_dir``                                   default frames
==============  ==========================================================  ==================
DVS128 Gesture  ``DVSGesture/ibmGestureTrain/user01_fluorescent/0.npy`` ...  40 x 30 ms, 32x32
                (``ibmGestureTest`` for the test users), label = file name
CIFAR10-DVS     ``CIFAR10DVS/airplane/*.aedat4`` ... ``CIFAR10DVS/truck/``   10 x 10 ms, 42x42
N-MNIST         ``NMNIST/Train/0/00002.bin`` ... (``Test`` for the test       10 x 30 ms, 34x34
                split), label = folder name
==============  ==========================================================  ==================

``data_dir`` may also be the data set's own folder (``.../DVSGesture``). Every sample becomes
counts of events per polarity ``[T, H, W, 2]`` (uint16) over the first ``T * bin`` of the
recording, starting at its first (earliest) event (:func:`mlf_jax.data.events.events_to_frames`),
frame for frame the authors' preprocessing of the same events (CIFAR10-DVS's 128 -> 42
pixels by their ``c // 3.04``), except that their CIFAR10-DVS frames put the sensor's x on
the first image axis where ours keep ``[y, x]`` for every data set, and that their window
keeps the events before time ``T * bin`` of the recording's clock and bins from the first of
them, where ours takes ``T * bin`` from the first event (the same when the recording starts
at 0). Their reader of the original ``.aedat`` files mirrors x (``127 - x``); ours reads
tonic's ``.aedat4`` conversion, and whether the two agree in orientation is not checked.
Counts are uint16, never wrapping where their int8 frames would.
:func:`load` converts a split once, with a progress bar, and writes an ``.npz`` cache whose name
and metadata hold the preprocessing parameters and a fingerprint of the input files; a cache
made with other parameters or other files is not reused.

Splits:

- DVS128 Gesture: tonic's archives, ``ibmGestureTrain`` = users 1-23, ``ibmGestureTest`` =
  users 24-29 (the official split); 11 classes; each file is one labelled gesture already cut
  from its recording (tonic stores times in ms; tonic's reader gives microseconds).
- CIFAR10-DVS has no official split. As in the authors' code: per class, the first 900 of
  the 1000 recordings train and the last 100 test, in sorted file order. Generalised here to
  the first ``floor(0.9 * n)`` of each class's ``n`` recordings, so that small test
  directories work.
  "Sorted" is the natural order of the file names, numbers compared as numbers
  (``cifar10_airplane_2`` before ``cifar10_airplane_10``), i.e. recording index order; plain
  string order would put recordings 0, 1, 10, 100, ... first.
- N-MNIST: tonic's ``Train`` / ``Test`` folders (60,000 / 10,000 samples). Its recordings last
  about 300 ms (three saccades of ~100 ms); the default takes all of it, 10 frames of 30 ms,
  at the sensor's 34x34. The paper does not use N-MNIST; this default is our choice.

A recording that is empty, truncated or corrupt, holds no events, or has events outside the
sensor raises :class:`mlf_jax.data.DataFileError` naming its file (a cut exactly between two
packets or events cannot be told from a shorter recording). ``preprocessing`` of :func:`load`
sets other frames: e.g. each data set's default window (the table above: 1.2 s, 100 ms,
300 ms) cut into as many frames as the model has time steps, as the experiments do.

Every recording is decoded by its tonic class (``dataset[i]``); for CIFAR10-DVS that is
:func:`tonic.io.read_aedat4`, which needs the ``aedat`` package (a dependency of this project).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import re
import struct
import tempfile
import warnings
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from mlf_jax.data.errors import DataFileError, DatasetNotFoundError
from mlf_jax.data.events import FRAME_DTYPE, events_to_frames
from mlf_jax.data.source import ArraySource

__all__ = [
    "CACHE_FORMAT",
    "NMNIST_EVENT_BYTES",
    "DataFileError",
    "Preprocessing",
    "RawEvents",
    "SPECS",
    "cache_path",
    "check_file_size",
    "convert",
    "load",
    "load_cifar10_dvs",
    "load_dvs_gesture",
    "load_nmnist",
    "raw_events",
]

#: Version of the cache layout and of the conversion; part of every cache key.
CACHE_FORMAT = 1

SPLITS = ("train", "test")

#: Bytes per event in an N-MNIST ``.bin`` file.
NMNIST_EVENT_BYTES = 5

#: What tonic's readers raise on a truncated or corrupt file (``np.load`` of a cut ``.npy``:
#: ValueError / EOFError; ``aedat`` on a cut AEDAT 4: RuntimeError; N-MNIST: IndexError).
_READ_ERRORS = (
    OSError, EOFError, ValueError, IndexError, KeyError, TypeError, RuntimeError, struct.error
)  # fmt: skip


@dataclasses.dataclass(frozen=True)
class Preprocessing:
    """How recordings become frames: ``n_bins`` frames of ``bin_us`` microseconds each.

    ``size`` is the ``(width, height)`` of the frames; sensor coordinates are mapped to it by
    ``floor(c * size / sensor)``, or by ``c // divisor`` when ``divisor`` is set (CIFAR10-DVS:
    the authors' 3.04; see :func:`mlf_jax.data.events.downsample`).
    """

    n_bins: int
    bin_us: int
    size: tuple[int, int]
    divisor: float | None = None

    @property
    def window_us(self) -> int:
        return self.n_bins * self.bin_us


@dataclasses.dataclass(frozen=True)
class _Spec:
    name: str
    folder: str  # tonic's class name = its folder under save_to
    sensor_size: tuple[int, int]  # (width, height)
    num_classes: int
    default: Preprocessing
    layout: str  # for error messages


_GESTURE_LAYOUT = (
    "tonic's DVSGesture layout: {root}/ibmGestureTrain/user01_fluorescent/0.npy ... "
    "(users 1-23, one folder per user and lighting, one file per gesture named by its label "
    "0-10) and {root}/ibmGestureTest/user24_.../ (users 24-29), as extracted from tonic's "
    "ibmGestureTrain.tar.gz and ibmGestureTest.tar.gz (tonic.datasets.DVSGesture(save_to) "
    "downloads them where there is network)"
)
_CIFAR_LAYOUT = (
    "tonic's CIFAR10DVS layout: {root}/<class>/*.aedat4 with one folder per class (airplane, "
    "automobile, bird, cat, deer, dog, frog, horse, ship, truck), as extracted from tonic's "
    "CIFAR10DVS.zip and its per-class zips (tonic.datasets.CIFAR10DVS(save_to) downloads them "
    "where there is network)"
)
_NMNIST_LAYOUT = (
    "tonic's NMNIST layout: {root}/Train/<digit>/*.bin and {root}/Test/<digit>/*.bin (the "
    "original 5-byte-per-event binary files, one folder per digit 0-9), as extracted from "
    "tonic's train.zip and test.zip (tonic.datasets.NMNIST(save_to) downloads them where there "
    "is network)"
)

#: How each event data set is read, by its name (its key in
#: :data:`mlf_jax.data.registry.DATASETS`, which also resolves the other spellings): tonic's
#: folder, sensor size, classes, default frames.
SPECS: dict[str, _Spec] = {
    "dvs_gesture": _Spec(
        "dvs_gesture",
        "DVSGesture",
        (128, 128),
        11,
        Preprocessing(40, 30_000, (32, 32)),
        _GESTURE_LAYOUT,
    ),
    "cifar10_dvs": _Spec(
        "cifar10_dvs",
        "CIFAR10DVS",
        (128, 128),
        10,
        Preprocessing(10, 10_000, (42, 42), divisor=3.04),
        _CIFAR_LAYOUT,
    ),
    "nmnist": _Spec(
        "nmnist", "NMNIST", (34, 34), 10, Preprocessing(10, 30_000, (34, 34)), _NMNIST_LAYOUT
    ),
}


def _spec(name: str) -> _Spec:
    """The :data:`SPECS` entry of event data set ``name`` (its one name).

    Raises:
      ValueError: for another name.
    """
    if name not in SPECS:
        raise ValueError(
            f"unknown data set {name!r}; the event data sets are {sorted(SPECS)} (other "
            "spellings: mlf_jax.data.registry.canonical_name)"
        )
    return SPECS[name]


def _natural_key(text: str) -> list:
    """Sort key comparing runs of digits as numbers: ``a2 < a10``."""
    return [(0, int(s), "") if s.isdigit() else (1, 0, s) for s in re.split(r"(\d+)", text) if s]


def _not_found(spec: _Spec, data_dir: str | os.PathLike, detail: str) -> DatasetNotFoundError:
    root = os.path.join(os.fspath(data_dir), spec.folder)
    return DatasetNotFoundError(
        f"{spec.folder} not found in {os.fspath(data_dir)!r}: {detail}. Expected "
        + spec.layout.format(root=root)
        + ". Pass the directory that holds the "
        + f"{spec.folder} folder (tonic's save_to) as data_dir."
    )


def _save_to(spec: _Spec, data_dir: str | os.PathLike) -> Path:
    """tonic's ``save_to``: ``data_dir``, or its parent when ``data_dir`` is the data set folder."""
    data_dir = Path(data_dir)
    if (data_dir / spec.folder).is_dir():
        return data_dir
    if data_dir.name == spec.folder and data_dir.is_dir():
        return data_dir.parent
    raise _not_found(spec, data_dir, f"no folder {data_dir / spec.folder}")


def _offline(cls: type) -> Any:
    """A subclass of a tonic data set that never downloads (its folder is checked by us).

    It keeps the class name, from which tonic derives the folder under ``save_to``.
    """

    def download(self):
        raise DatasetNotFoundError(
            f"{cls.__name__}: files missing under {self.location_on_system}; not downloading"
        )

    return type(cls.__name__, (cls,), {"_check_exists": lambda self: True, "download": download})


class RawEvents:
    """The recordings of one split, in a fixed order: ``raw[i] -> (events, label)``.

    Attributes:
      name: the data set (a key of :data:`SPECS`).
      split: ``'train'`` or ``'test'``.
      paths: one file per sample.
      labels: int32 class per sample.
      dataset: the tonic data set the samples come from.
    """

    def __init__(self, name: str, split: str, dataset, indices: list[int], root: Path):
        self.name, self.split, self.dataset = name, split, dataset
        self.spec = SPECS[name]
        self.root = root
        self.indices = list(indices)
        self.paths = [Path(dataset.data[i]) for i in self.indices]
        self.labels = np.asarray([int(dataset.targets[i]) for i in self.indices], np.int32)
        bad = [
            p
            for p, y in zip(self.paths, self.labels, strict=True)
            if not 0 <= y < self.spec.num_classes
        ]
        if bad:
            raise ValueError(
                f"{bad[0]}: label outside 0..{self.spec.num_classes - 1} ("
                + self.spec.layout.format(root=root)
                + ")"
            )

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int) -> tuple[np.ndarray, int]:
        return self.events(i), int(self.labels[i])

    def events(self, i: int) -> np.ndarray:
        """Events of sample ``i``, read by tonic (its structured array, ``t`` in microseconds).

        Raises:
          DataFileError: naming the file when it is empty, truncated or corrupt, or holds no
            events.
        """
        path = self.paths[i]
        check_file_size(self.name, path, os.path.getsize(path))
        try:
            events, _ = self.dataset[self.indices[i]]
        except _READ_ERRORS as e:
            raise DataFileError(
                path,
                f"cannot be read as a {self.spec.folder} recording, truncated or corrupt "
                f"({type(e).__name__}: {e})",
            ) from e
        if len(events) == 0:
            raise DataFileError(path, f"holds no events (an empty {self.spec.folder} recording)")
        return events

    def fingerprint(self) -> str:
        """sha256 of the samples' paths (relative to the data set folder), sizes and labels."""
        h = hashlib.sha256()
        for path, label in zip(self.paths, self.labels, strict=True):
            rel = os.path.relpath(path, self.root)
            h.update(f"{rel}\0{os.path.getsize(path)}\0{label}\n".encode())
        return h.hexdigest()


def check_file_size(name: str, path: str | os.PathLike, size: int) -> None:
    """Raises :class:`DataFileError` naming ``path`` when a recording of data set ``name`` of
    ``size`` bytes is empty, or (N-MNIST) not a whole number of 5-byte events."""
    if size == 0:
        raise DataFileError(path, "is empty (0 bytes)")
    if name == "nmnist" and size % NMNIST_EVENT_BYTES:
        raise DataFileError(
            path,
            f"holds {size} bytes, not a multiple of the {NMNIST_EVENT_BYTES} bytes of an N-MNIST "
            "event: truncated",
        )


def _gesture(save_to: Path, split: str, spec: _Spec) -> RawEvents:
    import tonic.datasets  # noqa: PLC0415  (slow import, only when used)

    folder = "ibmGestureTrain" if split == "train" else "ibmGestureTest"
    root = save_to / spec.folder
    files = sorted((root / folder).glob("user*_*/*.npy"))
    if not files:
        raise _not_found(spec, save_to, f"no user*_*/*.npy files in {root / folder}")
    bad = [f for f in files if not f.stem.isdigit()]
    if bad:
        raise ValueError(
            f"{bad[0]}: file name is not a label; expected " + spec.layout.format(root=root)
        )
    ds = _offline(tonic.datasets.DVSGesture)(os.fspath(save_to), train=split == "train")
    order = sorted(
        range(len(ds.data)), key=lambda i: _natural_key(os.path.relpath(ds.data[i], root))
    )
    return RawEvents(spec.name, split, ds, order, root)


def _cifar10_dvs(save_to: Path, split: str, spec: _Spec, train_fraction: float) -> RawEvents:
    import tonic.datasets  # noqa: PLC0415

    root = save_to / spec.folder
    cls = _offline(tonic.datasets.CIFAR10DVS)
    stray = [f for f in root.rglob("*.aedat4") if f.parent.name not in cls.classes]
    if stray:
        raise _not_found(spec, save_to, f"{stray[0]} is not in a class folder")
    empty = [c for c in cls.classes if not any((root / c).glob("*.aedat4"))]
    if empty:
        raise _not_found(spec, save_to, f"no .aedat4 files in {root}/{{{','.join(empty)}}}")
    ds = cls(os.fspath(save_to))
    indices = []
    for label in range(spec.num_classes):
        members = [i for i, y in enumerate(ds.targets) if y == label]
        members.sort(key=lambda i: _natural_key(os.path.basename(ds.data[i])))
        n_train = math.floor(len(members) * train_fraction + 1e-9)
        indices += members[:n_train] if split == "train" else members[n_train:]
    return RawEvents(spec.name, split, ds, indices, root)


def _nmnist(save_to: Path, split: str, spec: _Spec) -> RawEvents:
    import tonic.datasets  # noqa: PLC0415

    folder = "Train" if split == "train" else "Test"
    root = save_to / spec.folder
    files = sorted((root / folder).glob("*/*.bin"))
    if not files:
        raise _not_found(spec, save_to, f"no <digit>/*.bin files in {root / folder}")
    bad = [f for f in files if not f.parent.name[-1:].isdigit()]
    if bad:
        raise _not_found(spec, save_to, f"{bad[0]} is not in a digit folder")
    ds = _offline(tonic.datasets.NMNIST)(os.fspath(save_to), train=split == "train")
    order = sorted(
        range(len(ds.data)), key=lambda i: _natural_key(os.path.relpath(ds.data[i], root))
    )
    return RawEvents(spec.name, split, ds, order, root)


def raw_events(
    name: str, data_dir: str | os.PathLike, split: str = "train", *, train_fraction: float = 0.9
) -> RawEvents:
    """The recordings of a split of data set ``name``, read through its tonic class.

    Args:
      name: ``'dvs_gesture'``, ``'cifar10_dvs'`` or ``'nmnist'`` (other spellings:
        :func:`mlf_jax.data.registry.canonical_name`).
      data_dir: tonic's ``save_to`` (the directory holding the data set folder) or the data set
        folder itself.
      split: ``'train'`` or ``'test'``.
      train_fraction: CIFAR10-DVS only: the share of each class (in natural file order) that
        is the training split.

    Raises:
      ValueError: for an unknown name or split, or files whose label cannot be read.
      DatasetNotFoundError: naming the directory looked in and the expected layout.
    """
    spec = _spec(name)
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; expected one of {list(SPLITS)}")
    save_to = _save_to(spec, data_dir)
    if name == "dvs_gesture":
        return _gesture(save_to, split, spec)
    if name == "cifar10_dvs":
        if not 0.0 < train_fraction < 1.0:
            raise ValueError(f"train_fraction must be in (0, 1), got {train_fraction}")
        return _cifar10_dvs(save_to, split, spec, train_fraction)
    return _nmnist(save_to, split, spec)


def convert(
    raw: RawEvents, preprocessing: Preprocessing, *, progress: bool = True
) -> tuple[np.ndarray, np.ndarray]:
    """Frames ``[N, T, H, W, 2]`` (uint16 counts) and labels ``[N]`` (int32) of ``raw``.

    Raises:
      DataFileError: naming the first file that is empty, truncated or corrupt, or whose
        events lie outside the sensor.
    """
    pre = preprocessing
    width, height = pre.size
    frames = np.zeros((len(raw), pre.n_bins, height, width, 2), FRAME_DTYPE)
    desc = f"{raw.name} {raw.split}: events -> frames"
    for i in tqdm(range(len(raw)), desc=desc, unit="sample", disable=not progress):
        events = raw.events(i)
        try:
            frames[i] = events_to_frames(
                events,
                n_bins=pre.n_bins,
                bin_us=pre.bin_us,
                sensor_size=raw.spec.sensor_size,
                size=pre.size,
                divisor=pre.divisor,
            )
        except (ValueError, OverflowError) as e:  # coordinates, polarities, counts
            raise DataFileError(raw.paths[i], str(e)) from e
    return frames, raw.labels.copy()


def _metadata(raw: RawEvents, pre: Preprocessing, train_fraction: float | None) -> dict:
    meta = {
        "format": CACHE_FORMAT,
        "dataset": raw.name,
        "split": raw.split,
        "n_bins": pre.n_bins,
        "bin_us": pre.bin_us,
        "size": list(pre.size),
        "sensor_size": list(raw.spec.sensor_size),
        "window_start": "earliest event",
        "downsample": "floor(c * size / sensor)" if pre.divisor is None else f"c // {pre.divisor}",
        "dtype": np.dtype(FRAME_DTYPE).name,
        "num_samples": len(raw),
        "files_sha256": raw.fingerprint(),
    }
    if train_fraction is not None:
        meta["train_fraction"] = train_fraction
    return meta


def cache_path(cache_dir: str | os.PathLike, meta: dict) -> Path:
    """Cache file for ``meta``: parameters in the name, plus a digest of all of ``meta``."""
    digest = hashlib.sha256(json.dumps(meta, sort_keys=True).encode()).hexdigest()[:16]
    width, height = meta["size"]
    name = (
        f"{meta['dataset']}_{meta['split']}_T{meta['n_bins']}_{meta['bin_us']}us_"
        f"{width}x{height}_{digest}.npz"
    )
    return Path(cache_dir) / name


def _read_cache(path: Path, meta: dict) -> ArraySource | None:
    try:
        with np.load(path, allow_pickle=False) as f:
            if json.loads(str(f["meta"])) != meta:
                return None
            return ArraySource({"image": f["image"], "label": f["label"]})
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, zipfile.BadZipFile) as e:
        warnings.warn(f"ignoring unreadable cache {path} ({e}); converting again", stacklevel=3)
        return None


def _write_cache(path: Path, meta: dict, frames: np.ndarray, labels: np.ndarray) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.stem, suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as f:
                np.savez_compressed(f, image=frames, label=labels, meta=np.array(json.dumps(meta)))
            os.replace(tmp, path)
        finally:
            if os.path.exists(tmp):
                os.remove(tmp)
    except OSError as e:
        warnings.warn(
            f"could not write the cache {path} ({e}); the next load converts again. Pass a "
            "writable cache_dir.",
            stacklevel=3,
        )


def load(
    name: str,
    data_dir: str | os.PathLike,
    split: str = "train",
    cache_dir: str | os.PathLike | None = None,
    *,
    preprocessing: Preprocessing | None = None,
    train_fraction: float = 0.9,
    progress: bool = True,
) -> ArraySource:
    """Split ``split`` of data set ``name`` as ``{'image': [N, T, H, W, 2] uint16, 'label': [N]
    int32}``, converted once and then read from the cache.

    Args:
      name: ``'dvs_gesture'``, ``'cifar10_dvs'`` or ``'nmnist'`` (other spellings:
        :func:`mlf_jax.data.registry.canonical_name`).
      data_dir: tonic's ``save_to`` (holding ``DVSGesture/``, ``CIFAR10DVS/`` or ``NMNIST/``)
        or that folder itself.
      split: ``'train'`` or ``'test'``.
      cache_dir: where the converted split is stored; ``<data_dir>/mlf_jax_cache`` when None.
      preprocessing: frames to make; the data set's default (the paper's) when None.
      train_fraction: CIFAR10-DVS only: share of each class in the training split.
      progress: show a tqdm progress bar while converting.

    Raises:
      ValueError: for an unknown name or split.
      DatasetNotFoundError: naming the directory looked in and the expected layout.
      DataFileError: (a ``ValueError``) naming a recording that is empty, truncated or
        corrupt (see :func:`convert`).
    """
    pre = preprocessing or _spec(name).default
    raw = raw_events(name, data_dir, split, train_fraction=train_fraction)
    meta = _metadata(raw, pre, train_fraction if name == "cifar10_dvs" else None)
    path = cache_path(Path(data_dir) / "mlf_jax_cache" if cache_dir is None else cache_dir, meta)
    cached = _read_cache(path, meta)
    if cached is not None:
        return cached
    frames, labels = convert(raw, pre, progress=progress)
    _write_cache(path, meta, frames, labels)
    return ArraySource({"image": frames, "label": labels})


def load_dvs_gesture(
    data_dir: str | os.PathLike,
    split: str = "train",
    cache_dir: str | os.PathLike | None = None,
    **kwargs,
) -> ArraySource:
    """DVS128 Gesture: 40 frames of 30 ms, 32x32, 11 classes, users 1-23 / 24-29 (see
    :func:`load`)."""
    return load("dvs_gesture", data_dir, split, cache_dir, **kwargs)


def load_cifar10_dvs(
    data_dir: str | os.PathLike,
    split: str = "train",
    cache_dir: str | os.PathLike | None = None,
    **kwargs,
) -> ArraySource:
    """CIFAR10-DVS: 10 frames of 10 ms, 42x42, first 90 % of each class train (see
    :func:`load`)."""
    return load("cifar10_dvs", data_dir, split, cache_dir, **kwargs)


def load_nmnist(
    data_dir: str | os.PathLike,
    split: str = "train",
    cache_dir: str | os.PathLike | None = None,
    **kwargs,
) -> ArraySource:
    """N-MNIST: 10 frames of 30 ms, 34x34, tonic's Train / Test (see :func:`load`)."""
    return load("nmnist", data_dir, split, cache_dir, **kwargs)
