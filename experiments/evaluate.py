"""Evaluate saved weights on the whole test set of a config's data set.

    python -m experiments.evaluate --config=experiments/configs/fashion_mnist.py \\
        --weights=experiments/weights/fashion_mnist_ds8.msgpack \\
        [--batch_size=500 --confusion_plot=confusion.png --json_out=eval.json \\
         --split=train --config.data_dir=...]

Loads ``{'params', 'batch_stats'}`` (a file of ``experiments.export`` or a run's
``final_variables.msgpack``; no optimiser or training state), checked against the config's
model (:func:`experiments.export.load`), runs the model in eval mode (tdBN with its running
statistics) over every test example once, the last partial batch included, and prints JSON
on stdout: ``test_accuracy``, ``per_class_accuracy``, ``num_examples``,
``confusion_matrix`` (rows: true class, columns: predicted), ``class_names``, ``dataset``,
``weights``, ``config`` and ``config_overrides``. ``--split=train`` evaluates the
training set instead, without augmentation (how well the model fits what it was trained
on); the accuracy is then ``train_accuracy``. A progress bar goes to stderr. A mistake
in the command, the config, the data or the weights ends with one line ``error: ...`` and
exit code 1.

One device (the default one); the forward pass is jitted once for the batch size.
"""

from __future__ import annotations

import functools
import math
import os
import signal
import sys
import threading
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from absl import app, flags, logging
from etils import epath
from ml_collections import config_flags
from tqdm.auto import tqdm

import mlf_jax as mj
from experiments import config_check, export, input_pipeline, trainer
from experiments.allocator import reexec_with_jemalloc
from experiments.models import build_model

__all__ = [
    "SPLITS",
    "USER_ERRORS",
    "confusion_matrix",
    "evaluate",
    "plot_confusion",
    "predict",
    "summarize",
]

USER_ERRORS = export.USER_ERRORS

#: The splits a config's data set can be evaluated on.
SPLITS = ("test", "train")

#: Set by the command line's Ctrl-C handler (:func:`_on_interrupt`), checked by the loop.
_INTERRUPTED = threading.Event()


def _on_interrupt(signum: int, frame: Any) -> None:
    """Ctrl-C: raises ``KeyboardInterrupt`` as Python's own handler does, and remembers it.

    Raised while a garbage-collection callback runs (JAX registers one), the exception is
    swallowed ("Exception ignored in ..."), and the evaluation would go on to write its JSON
    and exit 0; so the loop and the writing check :func:`_check_interrupted` as well.
    """
    _INTERRUPTED.set()
    raise KeyboardInterrupt


def _check_interrupted() -> None:
    """Raises ``KeyboardInterrupt`` if a Ctrl-C arrived (see :func:`_on_interrupt`)."""
    if _INTERRUPTED.is_set():
        raise KeyboardInterrupt


def predict(
    config: Any,
    variables: dict[str, Any],
    *,
    batch_size: int | None = None,
    data: input_pipeline.Data | None = None,
    model: Any = None,
    progress: bool = True,
    split: str = "test",
) -> tuple[np.ndarray, np.ndarray]:
    """``(labels, predictions)`` of every example of a split (``"test"`` or ``"train"``)
    of ``config``'s data set, in order, preprocessed as for evaluation (never augmented).

    Batches of ``batch_size`` (default ``config.eval_batch_size``); the last, short one is
    padded to the same size so that one compiled function serves all, and its padding is
    cut off the predictions (tdBN in eval mode treats each example on its own, so padding
    changes nothing else).
    """
    data = data if data is not None else input_pipeline.get_datasets(config)
    model = model if model is not None else build_model(config)
    batch_size = config.eval_batch_size if batch_size is None else int(batch_size)
    if batch_size < 1:
        raise config_check.ConfigError(f"--batch_size must be >= 1, got {batch_size}")
    if split not in SPLITS:
        raise config_check.ConfigError(f"--split must be one of {SPLITS}, got {split!r}")
    source = data.test if split == "test" else data.train
    n = len(source)
    if n == 0:
        raise config_check.ConfigError(f"the {config.dataset} {split} set is empty")

    @jax.jit
    def classify(variables: Any, images: jax.Array) -> jax.Array:
        logits = model.apply(variables, mj.train.model_input(images), train=False)
        return jnp.argmax(logits, -1)

    device_vars = jax.device_put(variables)
    labels, predictions = [], []
    with tqdm(total=n, unit="img", desc="evaluate", file=sys.stderr, disable=not progress) as bar:
        for start in range(0, n, batch_size):
            _check_interrupted()
            idx = np.arange(start, min(start + batch_size, n))
            batch = data.preprocess(source[idx], False)
            padded = mj.train.pad_batch(batch, batch_size)
            out = np.asarray(classify(device_vars, padded["image"]))
            predictions.append(out[: len(idx)])
            labels.append(np.asarray(batch["label"]))
            bar.update(len(idx))
    return np.concatenate(labels).astype(np.int64), np.concatenate(predictions).astype(np.int64)


def confusion_matrix(labels: np.ndarray, predictions: np.ndarray, num_classes: int) -> np.ndarray:
    """Counts ``[true class, predicted class]`` (int64)."""
    matrix = np.zeros((num_classes, num_classes), np.int64)
    np.add.at(matrix, (np.asarray(labels), np.asarray(predictions)), 1)
    return matrix


def summarize(
    confusion: np.ndarray, class_names: Sequence[str], split: str = "test"
) -> dict[str, Any]:
    """Accuracy (``{split}_accuracy``), per-class accuracy (``None`` for a class without
    examples), the split and the matrix as JSON values."""
    total = int(confusion.sum())
    per_class_n = confusion.sum(axis=1)
    diagonal = np.diag(confusion)
    return {
        f"{split}_accuracy": float(diagonal.sum() / total) if total else None,
        "per_class_accuracy": {
            name: (float(diagonal[i] / per_class_n[i]) if per_class_n[i] else None)
            for i, name in enumerate(class_names)
        },
        "num_examples": total,
        "split": split,
        "class_names": list(class_names),
        "confusion_matrix": confusion.tolist(),
    }


def evaluate(
    config: Any,
    variables: dict[str, Any],
    *,
    batch_size: int | None = None,
    data: input_pipeline.Data | None = None,
    model: Any = None,
    progress: bool = True,
    split: str = "test",
) -> dict[str, Any]:
    """Evaluates ``variables`` on a split (``"test"`` by default) of ``config``'s data set:
    :func:`summarize` of the confusion matrix of :func:`predict`."""
    labels, predictions = predict(
        config,
        variables,
        batch_size=batch_size,
        data=data,
        model=model,
        progress=progress,
        split=split,
    )
    names = export.class_names(config.dataset)
    return summarize(confusion_matrix(labels, predictions, len(names)), names, split)


def plot_confusion(
    confusion: np.ndarray,
    class_names: Sequence[str],
    path: str | os.PathLike,
    title: str = "",
) -> None:
    """Saves the confusion matrix as an image (PNG by the suffix): each row normalised to
    the fraction of its true class, the counts written in the cells, class names on the
    axes. Uses matplotlib's Agg canvas (no display needed).

    Raises:
      config_check.ConfigError: matplotlib is not installed.
    """
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        raise config_check.ConfigError(
            "--confusion_plot needs matplotlib: .venv/bin/pip install -e '.[notebooks]' "
            "(or pip install matplotlib)"
        ) from None
    counts = np.asarray(confusion)
    rows = counts.sum(axis=1, keepdims=True)
    fraction = np.divide(counts, rows, out=np.zeros(counts.shape), where=rows > 0)
    k = len(class_names)
    size = max(5.0, 0.6 * k + 2.5)
    fig = Figure(figsize=(size + 1.0, size))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    image = ax.imshow(fraction, cmap="Blues", vmin=0.0, vmax=1.0)
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="fraction of the true class")
    for i in range(k):
        for j in range(k):
            if counts[i, j]:
                color = "white" if fraction[i, j] > 0.5 else "black"
                ax.text(j, i, str(counts[i, j]), ha="center", va="center", color=color, fontsize=8)
    ax.set_xticks(range(k), class_names, rotation=45, ha="right")
    ax.set_yticks(range(k), class_names)
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    if title:
        ax.set_title(title)
    fig.tight_layout()
    out = epath.Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("wb") as f:
        fig.savefig(f, format=out.suffix.lstrip(".") or "png", dpi=120)


# -- command line --------------------------------------------------------------------


def _define_flags() -> None:
    """This command's flags, defined only when it runs (``experiments.train`` defines a
    ``--config`` flag too, and both may be imported in one process)."""
    config_flags.DEFINE_config_file("config", None, "The experiment config of the weights.")
    flags.DEFINE_string("weights", None, "A weights .msgpack (or a run's final_variables).")
    flags.DEFINE_integer("batch_size", None, "Batch size (default: config.eval_batch_size).")
    flags.DEFINE_string("confusion_plot", None, "Also save the confusion matrix as this PNG.")
    flags.DEFINE_string("json_out", None, "Also write the JSON printed on stdout to this file.")
    flags.DEFINE_enum(
        "split", "test", list(SPLITS), "Evaluate this split (train: without augmentation)."
    )
    flags.mark_flags_as_required(["config", "weights"])


def main(argv: Sequence[str], command: Sequence[str] = ()) -> None:
    """Evaluates and prints the JSON; ``command`` is the full command line (for the
    record of its ``--config.*`` overrides)."""
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    fv = flags.FLAGS
    if not fv["verbosity"].present:
        logging.set_verbosity(logging.WARNING)
    config = fv.config
    # before any data is read or anything is compiled; the model it checks is the one run
    model = config_check.validate(config).model
    trainer.enable_compilation_cache(config.compilation_cache_dir)
    variables = export.load(fv.weights, config, model)
    data = input_pipeline.get_datasets(config)
    result = evaluate(
        config, variables, batch_size=fv.batch_size, data=data, model=model, split=fv.split
    )
    result |= {
        "dataset": config.dataset,
        "weights": fv.weights,
        "config": config_flags.get_config_filename(fv["config"]),
        "config_overrides": [a for a in command if a.startswith(("--config.", "--noconfig."))],
    }
    text = export.dumps(result)
    _check_interrupted()  # never a result (or exit code 0) after a Ctrl-C
    if fv.json_out:
        out = epath.Path(fv.json_out)
        out.parent.mkdir(parents=True, exist_ok=True)
        mj.train.write_atomically(out, text + "\n")
    if fv.confusion_plot:
        accuracy = result[f"{fv.split}_accuracy"]
        n = result["num_examples"]
        title = (
            f"{config.dataset}: {100 * accuracy:.2f} % of {n} {fv.split} examples"
            if accuracy is not None and math.isfinite(accuracy)
            else config.dataset
        )
        plot_confusion(
            np.asarray(result["confusion_matrix"]),
            result["class_names"],
            fv.confusion_plot,
            title,
        )
    print(text)


def run(argv: Sequence[str] | None = None) -> None:
    """The command line: ``main`` under absl, user errors as one line and exit code 1."""
    argv = list(sys.argv if argv is None else argv)
    _INTERRUPTED.clear()
    previous = signal.signal(signal.SIGINT, _on_interrupt)
    try:
        config_check.check_overrides(argv[1:])
        _define_flags()
        app.run(functools.partial(main, command=argv[1:]), argv=argv)
    except USER_ERRORS as e:
        sys.exit(f"error: {e}")
    except OSError as e:  # an unwritable --json_out or --confusion_plot, ...
        sys.exit(f"error: {e}")
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(130)
    except SystemExit:  # absl's exit after main: a Ctrl-C swallowed after the last check
        if _INTERRUPTED.is_set():
            print("interrupted", file=sys.stderr)
            sys.exit(130)
        raise
    finally:
        signal.signal(signal.SIGINT, previous)


if __name__ == "__main__":
    reexec_with_jemalloc()
    run()
