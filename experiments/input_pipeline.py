"""Data sets by name, for the experiment entry point.

``config.dataset`` picks one of :data:`LOADERS`, the loaders of the data sets of
:mod:`mlf_jax.data.registry`, which says what their inputs are (channels, frame size,
classes, static or event frames).

What ``config.model.time_steps`` (T) means depends on the data set:

- static images (``fashion_mnist``, ``digits``, ``cifar10``): the model encodes each image
  ``[H, W, C]`` as T steps (``config.model.encoder``: repeated by default; the spike
  encoders get intensities in ``[0, 1]`` instead of normalised images, see
  :func:`static_preprocessing`);
- event streams (``dvs_gesture``, ``cifar10_dvs``, ``nmnist``): each recording is binned into T
  frames ``[T, H, W, 2]`` over the data set's fixed time window (the registry's
  ``window_us``), the first ``window_us`` of the recording from its first event, so a frame
  lasts ``window_us / T``. DVS128 Gesture: 1.2 s, T = 40 gives the paper's 30 ms frames and
  T = 20 gives 60 ms frames; CIFAR10-DVS: 100 ms (T = 10: 10 ms); N-MNIST: 300 ms (T = 10:
  30 ms). T must divide the window into a whole number of microseconds. Frames are converted
  once per T and cached under ``config.cache_dir`` (default ``<data_dir>/mlf_jax_cache``),
  the cache file named by T and the frame length.
"""

from __future__ import annotations

import dataclasses
import functools
import numbers
import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import numpy as np

from experiments.errors import ConfigError
from mlf_jax.data import (
    ArraySource,
    augment,
    cifar10,
    digits,
    fashion_mnist,
    neuromorphic,
    registry,
)

__all__ = [
    "AUGMENTS",
    "LOADERS",
    "Data",
    "ensure_fashion_mnist",
    "hold_out",
    "event_preprocessing",
    "get_datasets",
    "static_preprocessing",
]

Preprocess = Callable[[Mapping[str, np.ndarray], bool], dict[str, np.ndarray]]
Augment = Callable[[dict, np.random.Generator], dict]


class Data(NamedTuple):
    """Train and test sources, host-side batch preprocessing and per-example augmentation;
    ``validation``: the examples held out of ``train`` (:func:`hold_out`), or ``None``."""

    train: ArraySource
    test: ArraySource
    preprocess: Preprocess
    augment: Augment | None = None
    validation: ArraySource | None = None


#: The seed of the permutation that picks the held-out validation examples: fixed, so that
#: every run of a data set with the same ``validation_size`` holds out the same examples.
VALIDATION_SEED = 0


def hold_out(data: Data, size: int) -> Data:
    """``data`` with ``size`` training examples moved into ``data.validation``: the last
    ``size`` of a fixed permutation (:data:`VALIDATION_SEED`) of the training set, so that
    choices made on them never see the test set. ``size`` 0: ``data`` unchanged.

    Raises:
      ConfigError: naming ``validation_size`` when it leaves no training example.
    """
    if size == 0:
        return data
    n = len(data.train)
    if not 0 < size < n:
        raise ConfigError(f"validation_size={size} must be smaller than the {n} training examples")
    order = np.random.default_rng(VALIDATION_SEED).permutation(n)
    keep, held = np.sort(order[: n - size]), np.sort(order[n - size :])
    return data._replace(
        train=ArraySource(data.train[keep]), validation=ArraySource(data.train[held])
    )


#: ``config.augment``: ``''`` is the data set's default (random crop and flip for CIFAR10,
#: nothing for the others); ``crop_flip_erase`` adds random erasing with probability 0.5.
#: Only the static image data sets (Fashion-MNIST, CIFAR10) are augmented.
AUGMENTS = ("", "none", "crop_flip", "crop_flip_erase")

#: Probability of random erasing under ``crop_flip_erase``.
ERASE_PROBABILITY = 0.5


def _augment(config: Any, crop_flip: Augment, default: str) -> Augment | None:
    """The per-example augmentation that ``config.augment`` names, from the data set's
    random crop and flip."""
    kind = config.augment or default
    if kind == "none":
        return None
    if kind == "crop_flip":
        return crop_flip
    if kind == "crop_flip_erase":
        return functools.partial(_crop_flip_erase, crop_flip)
    raise ConfigError(f"config.augment must be one of {AUGMENTS}, got {config.augment!r}")


def _crop_flip_erase(crop_flip: Augment, example: dict, rng: np.random.Generator) -> dict:
    return augment.random_erase(crop_flip(example, rng), rng, ERASE_PROBABILITY)


def _no_augment(config: Any) -> None:
    if config.augment not in ("", "none"):
        raise ConfigError(
            f"config.augment={config.augment!r}: {config.dataset} is not augmented; "
            "use '' or 'none' (only fashion_mnist and cifar10 are)"
        )


def _has_fashion_mnist(data_dir: str | os.PathLike) -> bool:
    """Whether ``data_dir`` holds the IDX files of both splits."""
    try:
        fashion_mnist.find_files(data_dir, "train")
        fashion_mnist.find_files(data_dir, "test")
    except fashion_mnist.DatasetNotFoundError:
        return False
    return True


def _apt_install_fashion_mnist() -> bool:
    """Installs Debian's ``dataset-fashion-mnist`` with apt-get; False (and a note on stderr)
    when apt-get fails."""
    print("Fashion-MNIST not found; installing Debian's dataset-fashion-mnist ...", file=sys.stderr)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    try:
        for cmd in (
            ["apt-get", "update", "-qq"],
            ["apt-get", "install", "-y", "-qq", "dataset-fashion-mnist"],
        ):
            subprocess.run(cmd, check=True, env=env)
    except (OSError, subprocess.CalledProcessError) as e:
        print(f"apt-get failed ({e}); downloading the files instead", file=sys.stderr)
        return False
    return True


def ensure_fashion_mnist(data_dir: str, install: bool) -> str:
    """The directory to read Fashion-MNIST from, getting the files when they are missing.

    In order:

    1. ``data_dir``, when it holds the files;
    2. when ``data_dir`` is Debian's default directory (:data:`fashion_mnist.DEFAULT_DIR`) and
       ``install`` is set: the user cache (:func:`fashion_mnist.default_cache_dir`) when it
       already holds them; else Debian's ``dataset-fashion-mnist`` installed with apt-get when
       we are root and have apt-get; else (or when apt-get fails) the files downloaded from
       their canonical location (or ``$MLF_JAX_FASHION_MNIST_URL``) into the user cache and
       checked (:func:`fashion_mnist.download`), so that it works without root, on macOS or
       Colab.

    A ``data_dir`` set by the user is never written to: when it lacks the files, the
    ``DatasetNotFoundError`` names it and says how to download them there.

    Raises:
      DatasetNotFoundError: when the files are missing and are not fetched (see above).
      DownloadError, ChecksumError: from :func:`fashion_mnist.download`.
    """
    if _has_fashion_mnist(data_dir):
        return data_dir
    default = os.path.realpath(data_dir) == os.path.realpath(fashion_mnist.DEFAULT_DIR)
    if not (install and default):
        fashion_mnist.find_files(data_dir, "train")  # raises, saying how to get the files
        fashion_mnist.find_files(data_dir, "test")
    cache = fashion_mnist.default_cache_dir()
    if not _has_fashion_mnist(cache):
        can_apt = (
            hasattr(os, "geteuid") and os.geteuid() == 0 and shutil.which("apt-get") is not None
        )
        if can_apt and _apt_install_fashion_mnist() and _has_fashion_mnist(data_dir):
            return data_dir
        print(
            f"Fashion-MNIST not found; downloading it into {os.fspath(cache)} ...",
            file=sys.stderr,
        )
    return os.fspath(fashion_mnist.download(cache))


def static_preprocessing(
    config: Any, normalize: Callable[[np.ndarray], np.ndarray], peak: float
) -> Preprocess:
    """The preprocessing of a static image data set under ``config.model.encoder``.

    ``'direct'``: ``normalize`` (mean/std), the first convolution's input. The spike
    encoders (``'rate'``, ``'latency'``) read intensities in ``[0, 1]``: ``x / peak``.
    """
    if config.model.get("encoder", "direct") == "direct":
        scale = normalize
    else:

        def scale(images: np.ndarray) -> np.ndarray:
            return np.asarray(images, np.float32) / np.float32(peak)

    def preprocess(batch: Mapping[str, np.ndarray], train: bool) -> dict[str, np.ndarray]:
        return {"image": scale(batch["image"]), "label": batch["label"]}

    return preprocess


def _fashion_mnist(config: Any) -> Data:
    data_dir = ensure_fashion_mnist(
        config.data_dir or fashion_mnist.DEFAULT_DIR, config.install_data
    )
    preprocess = static_preprocessing(config, fashion_mnist.normalize, 255.0)
    return Data(
        fashion_mnist.load(data_dir, "train"),
        fashion_mnist.load(data_dir, "test"),
        preprocess,
        _augment(config, fashion_mnist.augment, default="none"),
    )


def _digits(config: Any) -> Data:
    if config.data_dir:
        raise ConfigError(
            f"config.data_dir={config.data_dir!r} is set, but the digits data set comes with "
            "scikit-learn and is read from no folder: leave config.data_dir empty"
        )
    _no_augment(config)
    preprocess = static_preprocessing(config, digits.normalize, 1.0)  # pixels in [0, 1]
    return Data(digits.load("train"), digits.load("test"), preprocess)


def _cifar10(config: Any) -> Data:
    if not config.data_dir:
        raise ConfigError(
            "set config.data_dir to a TFDS data_dir with cifar10, the folder of "
            "cifar-10-python.tar.gz, or its extracted cifar-10-batches-py folder"
        )
    preprocess = static_preprocessing(config, cifar10.normalize, 255.0)
    return Data(
        cifar10.load(config.data_dir, "train"),
        cifar10.load(config.data_dir, "test"),
        preprocess,
        _augment(config, cifar10.augment, default="crop_flip"),
    )


def event_preprocessing(name: str, time_steps: int) -> neuromorphic.Preprocessing:
    """Frames of event data set ``name`` (a key of :data:`mlf_jax.data.neuromorphic.SPECS`)
    for a model of ``time_steps`` steps: ``time_steps`` bins over the data set's default
    window, at its default frame size.

    DVS128 Gesture (1.2 s window): ``time_steps=40`` -> 40 bins of 30 ms; ``20`` -> 20 of 60 ms.

    Raises:
      ConfigError: naming ``model.time_steps`` when it is not a positive integer or does not
        divide the window into bins of a whole number of microseconds.
    """
    default = neuromorphic.SPECS[registry.canonical_name(name)].default
    window = default.window_us
    if (
        not isinstance(time_steps, numbers.Integral)
        or isinstance(time_steps, bool)
        or time_steps < 1
    ):
        raise ConfigError(f"model.time_steps must be a positive integer, got {time_steps!r}")
    if window % time_steps:
        raise ConfigError(
            f"model.time_steps={time_steps} does not divide the {name} window of {window} us "
            f"into whole microseconds ({window / time_steps:g} us per frame); pick a divisor "
            f"of {window}, e.g. {default.n_bins} (the default, {default.bin_us} us per frame)"
        )
    return dataclasses.replace(default, n_bins=int(time_steps), bin_us=window // int(time_steps))


def _event_frames(batch: Mapping[str, np.ndarray], train: bool) -> dict[str, np.ndarray]:
    """Event counts ``[B, T, H, W, 2]`` -> float32 (kept batch-major: the train step
    makes them time-major after the batch is split over devices)."""
    return {"image": batch["image"].astype(np.float32), "label": batch["label"]}


def _events(name: str) -> Callable[[Any], Data]:
    def make(config: Any) -> Data:
        _no_augment(config)
        if not config.data_dir:
            raise ConfigError(
                f"set config.data_dir to the folder holding tonic's layout of {name!r} "
                "(e.g. --config.data_dir=/data/tonic)"
            )
        cache = config.get("cache_dir") or None
        pre = event_preprocessing(name, config.model.time_steps)
        return Data(
            neuromorphic.load(name, config.data_dir, "train", cache, preprocessing=pre),
            neuromorphic.load(name, config.data_dir, "test", cache, preprocessing=pre),
            _event_frames,
        )

    return make


#: How to load each data set of :data:`mlf_jax.data.registry.DATASETS`, by its name.
LOADERS: dict[str, Callable[[Any], Data]] = {
    "fashion_mnist": _fashion_mnist,
    "digits": _digits,
    "cifar10": _cifar10,
    "dvs_gesture": _events("dvs_gesture"),
    "cifar10_dvs": _events("cifar10_dvs"),
    "nmnist": _events("nmnist"),
}


def get_datasets(config: Any) -> Data:
    """Sources, preprocessing and augmentation for ``config.dataset`` (any spelling of
    :func:`mlf_jax.data.registry.canonical_name`), with ``config.validation_size`` training
    examples held out for validation (:func:`hold_out`).

    Raises:
      ConfigError: for an unknown data set, or when the first training example's image does
        not have the registry's shape (:meth:`~mlf_jax.data.registry.DatasetInfo.example_shape`).
    """
    try:
        info = registry.get(config.dataset)
    except ValueError as e:
        raise ConfigError(str(e)) from None
    data = hold_out(LOADERS[info.name](config), config.get("validation_size", 0))
    want = info.example_shape(config.model.time_steps)
    if len(data.train):
        got = np.shape(data.train[0]["image"])
        if got != want:
            raise ConfigError(
                f"{config.dataset}: examples have images of shape {got}, expected {want} "
                "(the data set registry and model.time_steps)"
            )
    return data
