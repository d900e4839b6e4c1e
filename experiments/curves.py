"""Train and test curves of a run, from its ``metrics.jsonl``.

    python -m experiments.curves --workdir=workdir/fashion_mnist --out=curves.png

Per epoch: the mean training loss and accuracy of the epoch's logged windows (the network
in training mode, with batch statistics, while its weights change), and the
test loss and accuracy after the epoch (eval mode). The plot shows accuracy and loss against
epochs (the accuracy axis leaves out the first epoch of runs longer than three, so that the
end of the curves stays readable); ``--table`` also prints the numbers as a markdown table.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Sequence
from typing import Any

from absl import app, flags

import mlf_jax as mj

__all__ = ["epochs", "plot", "table"]


def epochs(records: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per evaluated epoch: ``epoch``, ``step``, ``train_loss`` and
    ``train_accuracy`` (mean over the train records of that epoch's steps), ``test_loss``,
    ``test_accuracy`` and ``wall_seconds``.

    Raises:
      ValueError: when the records hold no evaluation.
    """
    evals = sorted((r for r in records if r.get("kind") == "eval"), key=lambda r: r["step"])
    if not evals:
        raise ValueError("no evaluation in the metrics: has the run finished an epoch?")
    trains = [r for r in records if r.get("kind") == "train"]
    rows, previous = [], 0
    for e in evals:
        window = [r for r in trains if previous < r["step"] <= e["step"]]
        rows.append(
            {
                "epoch": e["epoch"],
                "step": e["step"],
                "train_loss": _mean(window, "loss"),
                "train_accuracy": _mean(window, "accuracy"),
                "test_loss": e["test_loss"],
                "test_accuracy": e["test_accuracy"],
                "wall_seconds": e.get("wall_seconds"),
            }
        )
        previous = e["step"]
    return rows


def _mean(records: Sequence[dict[str, Any]], key: str) -> float:
    return sum(r[key] for r in records) / len(records) if records else math.nan


def plot(rows: Sequence[dict[str, Any]], path: str, title: str = "") -> None:
    """Accuracy (left) and loss (right) per epoch, train and test, into ``path`` (PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    x = [r["epoch"] for r in rows]
    fig, (acc, loss) = plt.subplots(1, 2, figsize=(10, 3.8))
    acc.plot(x, [100 * r["train_accuracy"] for r in rows], "o-", label="train (running)")
    acc.plot(x, [100 * r["test_accuracy"] for r in rows], "s-", label="test")
    best = max(rows, key=lambda r: r["test_accuracy"])
    acc.annotate(
        f"{100 * rows[-1]['test_accuracy']:.2f} %",
        (rows[-1]["epoch"], 100 * rows[-1]["test_accuracy"]),
        textcoords="offset points",
        xytext=(-10, -18),
        ha="right",
    )
    acc.set_ylabel("accuracy (%)")
    low = min(min(r["test_accuracy"], r["train_accuracy"]) for r in rows[len(rows) > 3 :])
    acc.set_ylim(max(0.0, 100 * low - 2), 100)
    loss.plot(x, [r["train_loss"] for r in rows], "o-", label="train (running)")
    loss.plot(x, [r["test_loss"] for r in rows], "s-", label="test")
    loss.set_ylabel("cross-entropy")
    for ax in (acc, loss):
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle(
        title or f"best test accuracy {100 * best['test_accuracy']:.2f} % (epoch {best['epoch']})"
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def table(rows: Sequence[dict[str, Any]]) -> str:
    """The rows as a markdown table."""
    lines = [
        "| epoch | train loss | train acc. | test loss | test acc. | wall time |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        wall = "" if r["wall_seconds"] is None else f"{r['wall_seconds']:.0f} s"
        lines.append(
            f"| {r['epoch']} | {r['train_loss']:.4f} | {100 * r['train_accuracy']:.2f} % "
            f"| {r['test_loss']:.4f} | {100 * r['test_accuracy']:.2f} % | {wall} |"
        )
    return "\n".join(lines)


FLAGS = flags.FLAGS


def _define_flags() -> None:
    flags.DEFINE_string("workdir", None, "A run's work directory (holding metrics.jsonl).")
    flags.DEFINE_string("out", None, "The plot (PNG) to write.")
    flags.DEFINE_string("title", "", "Title of the plot (default: the best test accuracy).")
    flags.DEFINE_bool("table", False, "Also print the per-epoch markdown table.")
    flags.mark_flags_as_required(["workdir", "out"])


def main(argv: Sequence[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    rows = epochs(mj.train.read_metrics(FLAGS.workdir))
    plot(rows, FLAGS.out, FLAGS.title)
    if FLAGS.table:
        print(table(rows))


if __name__ == "__main__":
    _define_flags()
    try:
        app.run(main)
    except (ValueError, OSError) as e:
        sys.exit(f"error: {e}")
