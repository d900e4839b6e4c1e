"""What limits the fit of the spiking DS-ResNet on Fashion-MNIST: one factor at a time.

Every run trains the main job's network (DS-ResNet-8, widths 16/32/64, MLF with K = 3 at
thresholds 0.6/1.6/2.6, T = 1, rectangular surrogate of width 1, tdBN scaled to the first
threshold) on the same fixed subset of the training images with the same schedule, changing
one factor of that recipe. A net that fits its training subset well reaches a high accuracy
on it in eval mode; the gap between variants shows what the factor costs the fit. A ReLU
control (the same net without spikes) bounds what the architecture and schedule can fit.
After training, one batch of training images (batch statistics, as in training) is probed
inside the net: the proportion of dormant units (no surrogate gradient at any level), the
mean spike count, the share of units that use the upper levels (two or more spikes), and
the gradient norm at the stem's output relative to the last block's::

    python -m experiments.fit_study --out=experiments/results/fit_study.json \\
        --plot=experiments/results/fit_study.png

Resumable: a finished (variant, seed) is read back from ``--out`` and skipped; the file is
rewritten after every run. ``--variants`` and ``--seeds`` choose the runs.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from absl import app, flags
from flax import linen as nn

import mlf_jax as mj
from experiments.configs import fashion_mnist as fashion_mnist_config
from experiments.models import build_model
from experiments.trainer import make_optimizer
from mlf_jax.data import fashion_mnist

FLAGS = flags.FLAGS
flags.DEFINE_string("out", "experiments/results/fit_study.json", "Results JSON (resumable).")
flags.DEFINE_string("plot", "", "Draw the results here (PNG) when every run has finished.")
flags.DEFINE_string("data_dir", fashion_mnist.DEFAULT_DIR, "Fashion-MNIST IDX files.")
flags.DEFINE_list("variants", [], "Variants to run (default: all, in table order).")
flags.DEFINE_list("seeds", ["0"], "Seeds (initialisation and data order; the subset is fixed).")
flags.DEFINE_integer("train_size", 5000, "Training images: a fixed random subset.")
flags.DEFINE_integer("epochs", 10, "Epochs over the subset.")
flags.DEFINE_integer("batch_size", 128, "Batch size.")
flags.DEFINE_integer("probe_size", 256, "Training images probed inside the net after training.")

#: The recipe every variant starts from (the main job's model, without augmentation).
BASE: dict[str, Any] = {
    "neuron": "mlf",
    "thresholds": (0.6, 1.6, 2.6),
    "time_steps": 1,
    "surrogate": ("rectangular", 1.0),
    "v_th": None,  # tdBN's scale: None = the first threshold
    "learn_thresholds": False,
    "widths": (16, 32, 64),
    "augment": False,
    "weight_decay": 1e-4,
    "learning_rate": 0.3,
}

#: name -> (what changes, the settings that change).
VARIANTS: dict[str, tuple[str, dict[str, Any]]] = {
    "base": ("the main job's net and recipe (no augmentation)", {}),
    "relu": ("ReLU instead of spiking neurons (not an SNN)", {"neuron": "relu"}),
    "lif": ("one level (LIF, threshold 0.6)", {"thresholds": (0.6,)}),
    "T2": ("T = 2", {"time_steps": 2}),
    "T4": ("T = 4", {"time_steps": 4}),
    "rect0.5": ("rectangular surrogate, width 0.5", {"surrogate": ("rectangular", 0.5)}),
    "rect2": ("rectangular surrogate, width 2", {"surrogate": ("rectangular", 2.0)}),
    "triangle": ("triangle surrogate, width 1", {"surrogate": ("triangle", 1.0)}),
    "sigmoid": ("sigmoid surrogate, alpha 4", {"surrogate": ("sigmoid", 4.0)}),
    "arctan": ("arctan surrogate, alpha 2", {"surrogate": ("arctan", 2.0)}),
    "th0.3": ("thresholds 0.3/0.8/1.3 (half)", {"thresholds": (0.3, 0.8, 1.3)}),
    "vth1.0": ("tdBN scaled to 1.0 instead of 0.6", {"v_th": 1.0}),
    "vth1.6": ("tdBN scaled to 1.6 instead of 0.6", {"v_th": 1.6}),
    "learn_th": ("learned thresholds", {"learn_thresholds": True}),
    "wide": ("widths 32/64/128", {"widths": (32, 64, 128)}),
    "augment": ("random crop, flip and erasing", {"augment": True}),
    "wd0": ("no weight decay", {"weight_decay": 0.0}),
    "wd5e-4": ("weight decay 5e-4", {"weight_decay": 5e-4}),
    "lr0.1": ("learning rate 0.1", {"learning_rate": 0.1}),
    "lr1.0": ("learning rate 1.0", {"learning_rate": 1.0}),
    # Not one factor: the two cheap gains together, as the converged recipes combine them.
    "vth1.0+learn_th": (
        "tdBN scaled to 1.0 and learned thresholds",
        {"v_th": 1.0, "learn_thresholds": True},
    ),
}


class ReLU(nn.Module):
    """A stand-in neuron without spikes: ``relu`` of the input (the control)."""

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        return nn.relu(x)


def settings_of(variant: str) -> dict[str, Any]:
    """The base recipe with ``variant``'s changes."""
    return {**BASE, **VARIANTS[variant][1]}


def config_of(s: dict[str, Any], epochs: int = 10) -> Any:
    """The experiment config of settings ``s`` (the main job's Fashion-MNIST config with the
    recipe's model and optimiser; ``epochs`` for the schedule), on one device."""
    config = fashion_mnist_config.get_config()
    m = config.model
    m.depth, m.widths, m.time_steps = 8, tuple(s["widths"]), s["time_steps"]
    m.thresholds, m.v_th, m.learn_thresholds = (
        tuple(s["thresholds"]),
        s["v_th"],
        s["learn_thresholds"],
    )
    m.surrogate, m.surrogate_param = s["surrogate"]
    config.cross_device_bn = False  # the study's loop runs on one device
    config.learning_rate, config.weight_decay, config.momentum = (
        s["learning_rate"], s["weight_decay"], 0.9,
    )  # fmt: skip
    config.num_epochs, config.schedule, config.warmup_epochs = epochs, "cosine", 0.5
    return config


def build(s: dict[str, Any]) -> mj.models.ResNet:
    """The DS-ResNet-8 of settings ``s``: :func:`experiments.models.build_model` of its
    config, with the ReLU control's neuron given in code."""
    model = build_model(config_of(s))
    return model.clone(neuron=ReLU) if s["neuron"] == "relu" else model


def load_data(data_dir: str, train_size: int) -> tuple[dict, dict]:
    """The fixed training subset (uint8) and the whole test set (normalised)."""
    train = fashion_mnist.load(data_dir, "train")
    idx = np.sort(np.random.default_rng(0).permutation(len(train))[:train_size])
    test = fashion_mnist.load(data_dir, "test")
    return train[idx], {
        "image": fashion_mnist.normalize(test.arrays["image"]),
        "label": test.arrays["label"],
    }


def batches(images: np.ndarray, labels: np.ndarray, size: int):
    """Consecutive batches, the last one smaller."""
    for i in range(0, len(labels), size):
        yield images[i : i + size], labels[i : i + size]


def accuracy(state: mj.train.TrainState, images: np.ndarray, labels: np.ndarray) -> float:
    """Eval-mode accuracy (running tdBN statistics)."""
    predict = jax.jit(lambda v, x: jnp.argmax(state.apply_fn(v, x, train=False), -1))
    variables = {"params": state.params, "batch_stats": state.batch_stats}
    correct = sum(
        int(np.sum(np.asarray(predict(variables, x)) == y)) for x, y in batches(images, labels, 500)
    )
    return correct / len(labels)


def probe(
    model: mj.models.ResNet,
    state: mj.train.TrainState,
    x: np.ndarray,
    y: np.ndarray,
    s: dict[str, Any],
) -> dict[str, float]:
    """Dormant proportion, spikes per unit, upper-level use and gradient flow on one batch."""
    if s["neuron"] == "relu":
        return {}
    variables = {"params": state.params, "batch_stats": state.batch_stats}
    x = jnp.asarray(x)
    _, records = mj.analysis.record(model, variables, x, train=True)
    surrogate = mj.get_surrogate(*s["surrogate"])
    if s["learn_thresholds"]:  # the learned values are what the dormant test must use
        dormant = float("nan")
    else:
        fractions = mj.analysis.dormant_fractions(records, s["thresholds"], surrogate, atol=1e-6)
        dormant = float(np.mean(list(fractions.values())))
    spikes = [np.asarray(r.spikes) for r in records.values()]
    norms = mj.analysis.activation_grad_norms(model, variables, x, jnp.asarray(y), train=True)
    first, last = (
        float(np.linalg.norm(n)) for n in (norms[next(iter(norms))], norms[list(norms)[-1]])
    )
    return {
        "dormant": dormant,
        "spikes_per_unit": float(np.mean([s_.mean() for s_ in spikes])),
        "upper_levels": float(np.mean([(s_ >= 2).mean() for s_ in spikes])),
        "grad_first_over_last": first / last if last > 0 else float("nan"),
    }


def run(variant: str, seed: int, data: tuple[dict, dict]) -> dict[str, Any]:
    """Trains one variant with one seed and measures it."""
    s = settings_of(variant)
    train, test = data
    model = build(s)
    # the schedule counts the partial last batch, which the loop skips (one shape)
    steps_per_epoch = -(-len(train["label"]) // FLAGS.batch_size)
    tx, _ = make_optimizer(config_of(s, FLAGS.epochs), steps_per_epoch)
    sample = jnp.zeros((1, 28, 28, 1), jnp.float32)
    state = mj.train.create_train_state(model, tx, jax.random.key(seed), sample)
    step = jax.jit(mj.train.train_step)
    rng = np.random.default_rng(seed)
    t0 = time.perf_counter()
    losses = []
    for _ in range(FLAGS.epochs):
        order = rng.permutation(len(train["label"]))
        images, labels = train["image"][order], train["label"][order]
        if s["augment"]:
            images = np.stack(
                [fashion_mnist.augment({"image": im}, rng, erase=0.5)["image"] for im in images]
            )
        for x, y in batches(fashion_mnist.normalize(images), labels, FLAGS.batch_size):
            if len(y) < FLAGS.batch_size:
                continue  # one shape, one compilation
            state, metrics = step(state, {"image": x, "label": y})
            losses.append(float(metrics["loss"]))
    train_seconds = time.perf_counter() - t0
    train_x = fashion_mnist.normalize(train["image"])
    return {
        "variant": variant,
        "seed": seed,
        "change": VARIANTS[variant][0],
        "train_accuracy": accuracy(state, train_x, train["label"]),
        "test_accuracy": accuracy(state, test["image"], test["label"]),
        "final_loss": float(np.mean(losses[-10:])),
        "train_seconds": round(train_seconds, 1),
        **probe(model, state, train_x[: FLAGS.probe_size], train["label"][: FLAGS.probe_size], s),
    }


def read_rows(path: Path) -> list[dict]:
    """The runs already in ``path`` with this study's budget (others are not comparable)."""
    if not path.exists():
        return []
    saved = json.loads(path.read_text())
    if saved.get("budget") != budget():
        raise app.UsageError(
            f"{path} holds runs with another budget ({saved.get('budget')}); pass another --out"
        )
    return saved["runs"]


def budget() -> dict[str, Any]:
    """What every run shares (a results file is only extended with the same)."""
    return {
        "train_size": FLAGS.train_size,
        "epochs": FLAGS.epochs,
        "batch_size": FLAGS.batch_size,
        "probe_size": FLAGS.probe_size,
        "base": {k: list(v) if isinstance(v, tuple) else v for k, v in BASE.items()},
    }


def write_rows(path: Path, rows: list[dict]) -> None:
    """Rewrites the results file atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"budget": budget(), "runs": rows}, indent=1) + "\n")
    os.replace(tmp, path)


def summary(rows: list[dict]) -> list[dict[str, Any]]:
    """Per variant (table order): the mean of each figure over its seeds, and the seeds."""
    out = []
    for v in VARIANTS:
        runs = [r for r in rows if r["variant"] == v]
        if not runs:
            continue
        keys = [k for k in runs[0] if isinstance(runs[0][k], float)]
        out.append(
            {"variant": v, "change": VARIANTS[v][0], "seeds": len(runs)}
            | {k: float(np.mean([r[k] for r in runs])) for k in keys}
        )
    return out


def table(rows: list[dict]) -> str:
    """The results as a Markdown table, differences to the base in points."""
    lines = [
        "| variant | change | train subset | test | dormant | 2+ spikes | seeds |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    rows_ = summary(rows)
    base = next((r for r in rows_ if r["variant"] == "base"), None)
    for r in rows_:
        delta = (
            ""
            if base is None or r is base
            else (f" ({100 * (r['train_accuracy'] - base['train_accuracy']):+.1f})")
        )
        probe = (
            f"{100 * r['dormant']:.0f} %"
            if r.get("dormant") == r.get("dormant") and "dormant" in r
            else "-"
        )
        upper = f"{100 * r['upper_levels']:.1f} %" if "upper_levels" in r else "-"
        lines.append(
            f"| {r['variant']} | {r['change']} | {100 * r['train_accuracy']:.1f} %"
            f"{delta} | {100 * r['test_accuracy']:.1f} % | {probe} | {upper} | "
            f"{r['seeds']} |"
        )
    return "\n".join(lines)


def plot(rows: list[dict], path: Path) -> None:
    """Train-subset and test accuracy per variant (mean over seeds), and inside the net the
    dormant proportion and the share of units using the upper levels."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows_ = summary(rows)
    names = [r["variant"] for r in rows_]
    pos = np.arange(len(names))
    fig, (ax, ax2) = plt.subplots(
        2, 1, figsize=(10, 6.5), sharex=True, gridspec_kw={"height_ratios": [2, 1]}
    )
    train = [100 * r["train_accuracy"] for r in rows_]
    test = [100 * r["test_accuracy"] for r in rows_]
    ax.bar(pos - 0.2, train, 0.4, label="train subset (eval mode)")
    ax.bar(pos + 0.2, test, 0.4, label="test")
    if "base" in names:
        ax.axhline(train[names.index("base")], color="C0", lw=0.8, ls="--")
    ax.set_ylim(min(train + test) - 2, max(train + test) + 5)
    ax.set_ylabel("accuracy (%)")
    ax.set_title(
        f"What limits the fit: {FLAGS.train_size} training images, "
        f"{FLAGS.epochs} epochs (dashed: the base's train accuracy)"
    )
    ax.legend(loc="upper left", ncol=2)
    nan = float("nan")
    ax2.bar(
        pos - 0.2,
        [100 * r.get("dormant", nan) for r in rows_],
        0.4,
        color="C2",
        label="dormant units",
    )
    ax2.bar(
        pos + 0.2,
        [100 * r.get("upper_levels", nan) for r in rows_],
        0.4,
        color="C3",
        label="units with 2+ spikes",
    )
    ax2.set_ylabel("% of units")
    ax2.set_ylim(0, 100)
    ax2.legend(loc="upper left", ncol=2)
    ax2.set_xticks(pos, names, rotation=45, ha="right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main(argv: Sequence[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    unknown = [v for v in FLAGS.variants if v not in VARIANTS]
    if unknown:
        raise app.UsageError(f"unknown variants {unknown}; known: {', '.join(VARIANTS)}")
    out = Path(FLAGS.out)
    rows = read_rows(out)
    done = {(r["variant"], r["seed"]) for r in rows}
    todo = [
        (v, int(s))
        for v in (FLAGS.variants or VARIANTS)
        for s in FLAGS.seeds
        if (v, int(s)) not in done
    ]
    data = load_data(FLAGS.data_dir, FLAGS.train_size)
    for i, (variant, seed) in enumerate(todo):
        row = run(variant, seed, data)
        rows.append(row)
        write_rows(out, rows)
        print(
            f"[{i + 1}/{len(todo)}] {variant} s{seed}: train {row['train_accuracy']:.4f} "
            f"test {row['test_accuracy']:.4f} ({row['train_seconds']} s)",
            flush=True,
        )
    if FLAGS.plot:
        plot(rows, Path(FLAGS.plot))
    print(table(rows))


if __name__ == "__main__":
    app.run(main)
