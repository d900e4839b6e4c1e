"""Data sets by name, for the experiment entry point."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from mlf_jax.data import ArraySource, fashion_mnist

__all__ = ["DATASETS", "get_datasets", "ensure_fashion_mnist"]

Preprocess = Callable[[Mapping[str, np.ndarray], bool], dict[str, np.ndarray]]


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


def _fashion_mnist(config: Any) -> tuple[ArraySource, ArraySource, Preprocess]:
    data_dir = config.data_dir or fashion_mnist.DEFAULT_DIR
    ensure_fashion_mnist(data_dir, config.install_data)

    def preprocess(batch: Mapping[str, np.ndarray], train: bool) -> dict[str, np.ndarray]:
        return {"image": fashion_mnist.normalize(batch["image"]), "label": batch["label"]}

    return fashion_mnist.load(data_dir, "train"), fashion_mnist.load(data_dir, "test"), preprocess


DATASETS: dict[str, Callable[[Any], tuple[ArraySource, ArraySource, Preprocess]]] = {
    "fashion_mnist": _fashion_mnist,
}

#: (input channels, classes) per data set.
SHAPES = {"fashion_mnist": (1, 10)}


def get_datasets(config: Any) -> tuple[ArraySource, ArraySource, Preprocess]:
    """``(train, test, preprocess)`` for ``config.dataset``."""
    if config.dataset not in DATASETS:
        raise ValueError(f"unknown dataset {config.dataset!r}; expected one of {sorted(DATASETS)}")
    return DATASETS[config.dataset](config)
