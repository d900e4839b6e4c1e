"""The ``mlf-train`` console script: ``experiments.train`` of the clone mlf_jax runs from.

The training loop, its configs and its input pipeline live in the repository's
``experiments/`` folder, beside the ``mlf_jax`` package, not inside it: the library knows
nothing of experiment configs, and a wheel of the core installs no top-level
``experiments`` package. ``pip install -e ".[train,data]"`` from a clone makes the script
run that clone's ``experiments.train`` (configs are then given by path, e.g.
``mlf-train --config=experiments/configs/fashion_mnist.py --workdir=workdir/fmnist``).
Installed from a wheel, or without the ``train`` extra, it says what to do in one line.
"""

from __future__ import annotations

import sys
from pathlib import Path

__all__ = ["train", "repository_root"]

_CLONE_HINT = (
    "mlf-train runs the training loop of a clone of the mlf_jax repository; clone it and "
    "install it editable: pip install -e '.[train,data]'"
)


def repository_root() -> Path | None:
    """The clone this package was imported from (the folder holding ``mlf_jax/`` and
    ``experiments/train.py``), or ``None`` for an installed wheel."""
    root = Path(__file__).resolve().parent.parent
    return root if (root / "experiments" / "train.py").is_file() else None


def train(argv: list[str] | None = None) -> None:
    """Entry point of ``mlf-train``: the arguments are those of ``python -m
    experiments.train`` (``--config``, ``--workdir``, ``--config.<key>=<value>``, ...)."""
    root = repository_root()
    if root is None:
        sys.exit(f"error: {_CLONE_HINT}")
    if str(root) not in sys.path:
        sys.path.insert(0, str(root))
    try:
        from experiments import train as train_module
        from experiments.allocator import reexec_with_jemalloc
    except ModuleNotFoundError as e:
        top = (e.name or "").split(".")[0]
        if top == "experiments":
            sys.exit(f"error: {_CLONE_HINT}")
        sys.exit(
            f"error: training needs the 'train' and 'data' extras ({top} is not installed): "
            "pip install -e '.[train,data]'"
        )
    if argv is None:
        reexec_with_jemalloc()  # replaces the process; only for the real command line
    train_module.run(None if argv is None else [sys.argv[0], *argv])
