"""Data sets by name, for the experiment entry point."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import numpy as np

from mlf_jax.data import ArraySource, cifar10, digits, fashion_mnist, neuromorphic

__all__ = ["DATASETS", "Data", "get_datasets", "ensure_fashion_mnist"]

Preprocess = Callable[[Mapping[str, np.ndarray], bool], dict[str, np.ndarray]]
Augment = Callable[[dict, np.random.Generator], dict]


class Data(NamedTuple):
    """Train and test sources, host-side batch preprocessing and per-example augmentation."""

    train: ArraySource
    test: ArraySource
    preprocess: Preprocess
    augment: Augment | None = None


def ensure_fashion_mnist(data_dir: str, install: bool) -> None:
    """Installs Debian's ``dataset-fashion-mnist`` when the files are missing from
    its default directory, ``install`` is set, and we are root with ``apt-get``.

    Otherwise a missing file raises ``DatasetNotFoundError`` that says how to get it.
    """
    try:
        fashion_mnist.find_files(data_dir, "train")
        fashion_mnist.find_files(data_dir, "test")
        return
    except fashion_mnist.DatasetNotFoundError:
        can_apt = (
            install
            and os.path.realpath(data_dir) == os.path.realpath(fashion_mnist.DEFAULT_DIR)
            and hasattr(os, "geteuid")
            and os.geteuid() == 0
            and shutil.which("apt-get") is not None
        )
        if not can_apt:
            raise
    print("Fashion-MNIST not found; installing Debian's dataset-fashion-mnist ...", file=sys.stderr)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for cmd in (
        ["apt-get", "update", "-qq"],
        ["apt-get", "install", "-y", "-qq", "dataset-fashion-mnist"],
    ):
        subprocess.run(cmd, check=True, env=env)
    fashion_mnist.find_files(data_dir, "train")


def _fashion_mnist(config: Any) -> Data:
    data_dir = config.data_dir or fashion_mnist.DEFAULT_DIR
    ensure_fashion_mnist(data_dir, config.install_data)

    def preprocess(batch: Mapping[str, np.ndarray], train: bool) -> dict[str, np.ndarray]:
        return {"image": fashion_mnist.normalize(batch["image"]), "label": batch["label"]}

    return Data(
        fashion_mnist.load(data_dir, "train"), fashion_mnist.load(data_dir, "test"), preprocess
    )


def _digits(config: Any) -> Data:
    def preprocess(batch: Mapping[str, np.ndarray], train: bool) -> dict[str, np.ndarray]:
        return {"image": digits.normalize(batch["image"]), "label": batch["label"]}

    return Data(digits.load("train"), digits.load("test"), preprocess)


def _cifar10(config: Any) -> Data:
    if not config.data_dir:
        raise ValueError(
            "set config.data_dir to a TFDS data_dir with cifar10, the folder of "
            "cifar-10-python.tar.gz, or its extracted cifar-10-batches-py folder"
        )

    def preprocess(batch: Mapping[str, np.ndarray], train: bool) -> dict[str, np.ndarray]:
        return {"image": cifar10.normalize(batch["image"]), "label": batch["label"]}

    return Data(
        cifar10.load(config.data_dir, "train"),
        cifar10.load(config.data_dir, "test"),
        preprocess,
        cifar10.augment,
    )


def _event_frames(batch: Mapping[str, np.ndarray], train: bool) -> dict[str, np.ndarray]:
    """Event counts ``[B, T, H, W, 2]`` -> float32 (kept batch-major: the train step
    makes them time-major after the batch is split over devices)."""
    return {"image": batch["image"].astype(np.float32), "label": batch["label"]}


def _events(name: str) -> Callable[[Any], Data]:
    def make(config: Any) -> Data:
        if not config.data_dir:
            raise ValueError(
                f"set config.data_dir to the folder holding tonic's layout of {name!r} "
                "(e.g. --config.data_dir=/data/tonic)"
            )
        cache = config.get("cache_dir") or None
        return Data(
            neuromorphic.load(name, config.data_dir, "train", cache),
            neuromorphic.load(name, config.data_dir, "test", cache),
            _event_frames,
        )

    return make


DATASETS: dict[str, Callable[[Any], Data]] = {
    "fashion_mnist": _fashion_mnist,
    "digits": _digits,
    "cifar10": _cifar10,
    "gesture": _events("dvs_gesture"),
    "cifar10dvs": _events("cifar10_dvs"),
    "nmnist": _events("nmnist"),
}

#: (input channels, classes) per data set.
SHAPES = {
    "fashion_mnist": (1, 10),
    "digits": (1, 10),
    "cifar10": (3, 10),
    "gesture": (2, 11),
    "cifar10dvs": (2, 10),
    "nmnist": (2, 10),
}


def get_datasets(config: Any) -> Data:
    """Sources, preprocessing and augmentation for ``config.dataset``."""
    if config.dataset not in DATASETS:
        raise ValueError(f"unknown dataset {config.dataset!r}; expected one of {sorted(DATASETS)}")
    return DATASETS[config.dataset](config)
