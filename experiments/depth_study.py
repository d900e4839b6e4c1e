"""Depth study on Fashion-MNIST: do spiking nets degrade with depth; do MLF and DS-ResNet help?

The grid is {spiking ResNet, DS-ResNet} x {LIF, MLF K=3} x depths, every cell trained with the
same budget (data, epochs, batch, optimiser) once per seed (``config.seeds``; a seed draws
the training subset, the initialisation and the data order). The grid and the budget are a
config, ``experiments/configs/depth_study.py`` (the default ``--config``; override keys as
``--config.depths=8,32``). For each run it records train and test
accuracy, the proportion of dormant units and the gradient norm at the first layer,
at initialisation and after training; per cell, the mean, standard deviation and range over
the seeds::

    python -m experiments.depth_study --workdir=workdir/depth_study   # train + measure + plot
    python -m experiments.depth_study --config.depths=8 --config.seeds=0 --workdir=...

Resumable: a finished run is skipped; an interrupted one resumes from its last checkpoint
(``<workdir>/<cell>_s<seed>/checkpoints``). The aggregated results go to
``<workdir>/results.json`` and the plot to ``<workdir>/depth_study.png`` (``--results_out`` /
``--plot_out`` copy them elsewhere, e.g. into ``experiments/results/``, which the docs show); both
are rewritten after every finished run, with the runs still to do under ``"pending"``.
``--previous_results`` takes the runs of an earlier results file with the same settings
instead of training them again (e.g. to add seeds to a committed study, or to go on from a
study stopped part way on another machine: pass its ``--results_out`` file).
"""

from __future__ import annotations

import itertools
import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from absl import app, flags, logging
from flax import serialization
from ml_collections import config_flags

import mlf_jax as mj
from experiments import config_check, cpu_devices, input_pipeline, run_identity, trainer
from experiments.allocator import reexec_with_jemalloc
from experiments.configs import fashion_mnist as fashion_mnist_config
from experiments.models import build_model

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file(
    "config", "experiments/configs/depth_study.py", "The study's grid and budget."
)
flags.DEFINE_string("workdir", "workdir/depth_study", "One sub-directory per cell goes here.")
flags.DEFINE_string("data_dir", "", "Fashion-MNIST IDX files (default: the config's data_dir).")
flags.DEFINE_string("results_out", "", "Also write the aggregated results JSON here.")
flags.DEFINE_string("plot_out", "", "Also write the plot here.")
flags.DEFINE_string(
    "previous_results",
    "",
    "A results JSON of an earlier study with the same settings: its runs are used instead of "
    "training those (cell, seed) pairs again.",
)


NEURONS = {"lif": (0.6,), "mlf": (0.6, 1.6, 2.6)}
SHORTCUT_NAMES = {"standard": "spiking ResNet", "ds": "DS-ResNet"}


#: What varies between runs: (shortcut, neuron, depth, seed).
Run = tuple[str, str, int, int]

#: Per-run results summarised over seeds (mean, std, min, max) for each cell.
SUMMARISED = (
    "train_accuracy",
    "test_accuracy",
    "dormant_init",
    "dormant_final",
    "grad_norm_init",
    "grad_norm_final",
    "train_seconds",
)


def _items(value: Any) -> list[str]:
    """A config tuple as strings, also when given as one comma-separated string
    (``--config.neurons=lif,mlf`` arrives as ``('lif,mlf',)``)."""
    items = value if isinstance(value, (list, tuple)) else (value,)
    return [part.strip() for item in items for part in str(item).split(",") if part.strip()]


def cell_name(shortcut: str, neuron: str, depth: int, seed: int) -> str:
    return f"{shortcut}_{neuron}_d{depth}_s{seed}"


def cell_config(shortcut: str, neuron: str, depth: int, seed: int) -> Any:
    """The Fashion-MNIST config with this cell's model, the study's common budget and ``seed``."""
    config = data_config()
    config.model.depth = depth
    config.model.widths = tuple(int(w) for w in _items(FLAGS.config.widths))
    config.model.shortcut = shortcut
    config.model.thresholds = NEURONS[neuron]
    config.model.time_steps = FLAGS.config.time_steps
    config.model.v_th = None  # tdBN scaled to the first threshold, the paper's
    config.model.learn_thresholds = False  # fixed thresholds, the paper's
    config.batch_size = FLAGS.config.batch_size
    config.num_epochs = FLAGS.config.epochs
    config.learning_rate = FLAGS.config.learning_rate
    config.seed = seed
    config.log_every = 20
    config.study_train_size = FLAGS.config.train_size  # the subset is part of the cell's identity
    return config


def data_config() -> Any:
    """The Fashion-MNIST config, reading the data from ``--data_dir`` when it is given."""
    config = fashion_mnist_config.get_config()
    if FLAGS.data_dir:
        config.data_dir = FLAGS.data_dir
    return config


def subset(source: mj.data.ArraySource, size: int, seed: int) -> mj.data.ArraySource:
    """A fixed random subset (same for every cell)."""
    if size > len(source):
        raise ValueError(f"train_size {size} exceeds the training set ({len(source)} examples)")
    idx = np.sort(np.random.default_rng(seed).permutation(len(source))[:size])
    return mj.data.ArraySource(source[idx])


def probe(model: Any, variables: dict, batch: dict, thresholds: Sequence[float]) -> dict:
    """Dormant proportion per layer and first-layer gradient norm on one batch.

    Both use batch statistics in tdBN (``train=True``), as during training.

    The gradient runs op by op (not jitted: jit gives other numbers, e.g. 0.04786 against
    0.04792 for a DS-ResNet-20). Every call then compiles each neuron layer's ``lax.scan`` and
    its transpose afresh (a new body closure each time), and JAX's op-by-op cache keeps every
    such executable (up to 4096), with memory growing with the batch: about 8 MB each at 64
    examples, 30 MB at 256, so the process grew by GBs per depth-68 cell. ``jax.clear_caches()``
    drops them; whatever else was compiled is compiled again when next called.
    """
    surrogate = mj.rectangular(1.0)
    x = jnp.asarray(batch["image"])
    _, records = mj.analysis.record(model, variables, x, train=True)
    dormant = mj.analysis.dormant_fractions(records, thresholds, surrogate)
    del records  # every layer's potentials for the whole batch: not kept during the gradient

    def loss_fn(params):
        logits, _ = model.apply(
            {**variables, "params": params}, x, train=True, mutable=["batch_stats"]
        )
        return mj.train.cross_entropy(logits, jnp.asarray(batch["label"]))

    grad_norm = float(mj.analysis.first_layer_grad_norm(jax.grad(loss_fn)(variables["params"])))
    jax.clear_caches()
    return {
        "dormant_per_layer": {k: float(v) for k, v in dormant.items()},
        "dormant": float(np.mean(list(dormant.values()))),
        "first_layer_grad_norm": grad_norm,
    }


def accuracy(model: Any, variables: dict, source: Any, preprocess: Any, batch: int = 500) -> float:
    """Accuracy in evaluation mode (running tdBN statistics), with the trainer's evaluation
    (:func:`mlf_jax.train.evaluate`) on one device."""
    dp = mj.train.DataParallel("shard_map", devices=jax.devices()[:1])
    state = mj.train.TrainState.create(
        apply_fn=model.apply,
        params=variables["params"],
        tx=optax.identity(),
        batch_stats=variables["batch_stats"],
    )
    return mj.train.evaluate(dp, dp.put_state(state), source, preprocess, batch)["accuracy"]


def run_cell(
    shortcut: str,
    neuron: str,
    depth: int,
    seed: int,
    data: Any,
    train: Any,
    checked: config_check.Checked | None = None,
) -> dict:
    """Trains one cell with one seed with the experiments' trainer (resuming if interrupted),
    which saves its final variables; ``checked``: the cell's config as the study validated
    it before reading data (validated here otherwise)."""
    name = cell_name(shortcut, neuron, depth, seed)
    cdir = Path(FLAGS.workdir) / name
    done = cdir / "train.json"
    if checked is None:
        checked = config_check.validate(cell_config(shortcut, neuron, depth, seed))
    config = checked.config
    if done.exists():  # trained before: only if with these settings
        try:
            run_identity.check(cdir, config)
        except run_identity.ConfigMismatchError as e:
            raise run_identity.ConfigMismatchError(
                f"{str(e).split('. ')[0]}. The study in {FLAGS.workdir} was run with other "
                "settings: use a new --workdir for these"
            ) from None
        return json.loads(done.read_text())
    print(
        f"== {name}: {SHORTCUT_NAMES[shortcut]}-{depth}, {neuron.upper()}, seed {seed}", flush=True
    )
    cell_data = input_pipeline.Data(train, data.test, data.preprocess)
    try:
        out = trainer.train_and_evaluate(checked, cdir, data=cell_data)
    except trainer.DivergenceError as e:  # a diverged cell is a result, not a crash
        out = {"state": None, "diverged": str(e)}
    state = out.pop("state")
    if state is not None and out.get("preempted"):
        raise SystemExit(f"{out['stopped_by']}: stopped; run the same command to resume")
    out.update(shortcut=shortcut, neuron=neuron, depth=depth, seed=seed)
    done.write_text(json.dumps(out, indent=2) + "\n")
    return out


def measure_cell(shortcut: str, neuron: str, depth: int, seed: int, data: Any, train: Any) -> dict:
    """Train/test accuracy, dormant proportion and gradient norm at init and after training."""
    name = cell_name(shortcut, neuron, depth, seed)
    cdir = Path(FLAGS.workdir) / name
    path = cdir / "measure.json"
    settings = {
        "probe_size": FLAGS.config.probe_size,
        "train_eval_size": FLAGS.config.train_eval_size,
    }
    if path.exists():  # measured before: only if with these settings
        result = json.loads(path.read_text())
        if result.get("settings") == settings:
            return result
    config = cell_config(shortcut, neuron, depth, seed)
    config.cross_device_bn = False  # the probes run on one device, outside shard_map
    model = build_model(config)
    pre = data.preprocess
    probe_batch = pre(data.test[np.arange(FLAGS.config.probe_size)], False)
    sample = probe_batch["image"][:2]
    init = jax.jit(lambda r, x: model.init(r, x, train=False))(jax.random.key(config.seed), sample)
    result: dict[str, Any] = {
        "settings": settings,
        "init": probe(model, init, probe_batch, NEURONS[neuron]),
    }
    final_path = cdir / trainer.FINAL_VARIABLES
    if final_path.exists():
        variables = serialization.from_bytes(init, final_path.read_bytes())
        result["final"] = probe(model, variables, probe_batch, NEURONS[neuron])
        n = min(FLAGS.config.train_eval_size, len(train))
        result["train_accuracy"] = accuracy(model, variables, subset(train, n, 1), pre)
    path.write_text(json.dumps(result, indent=2) + "\n")
    return result


def summarise(rows: list[dict]) -> list[dict]:
    """One row per cell: for each of :data:`SUMMARISED`, mean, std (``ddof=1``; 0 for one
    seed), min and max over the seeds that did not diverge, and the seeds in ``seeds``."""
    cells: dict[tuple[str, str, int], list[dict]] = {}
    for r in rows:
        cells.setdefault((r["shortcut"], r["neuron"], r["depth"]), []).append(r)
    out = []
    for (shortcut, neuron, depth), runs in cells.items():
        row: dict[str, Any] = {
            "shortcut": shortcut,
            "neuron": neuron,
            "depth": depth,
            "seeds": sorted(r["seed"] for r in runs),
            "diverged_seeds": sorted(r["seed"] for r in runs if r.get("diverged")),
        }
        for key in SUMMARISED:
            v = np.asarray([r[key] for r in runs if r.get(key) is not None], np.float64)
            row[key] = (
                {
                    "mean": float(v.mean()),
                    "std": float(v.std(ddof=1)) if len(v) > 1 else 0.0,
                    "min": float(v.min()),
                    "max": float(v.max()),
                    "n": len(v),
                }
                if len(v)
                else None
            )
        out.append(row)
    return out


def plot(summary: list[dict], path: Path) -> None:
    """Test accuracy, train accuracy, dormant proportion and first-layer gradient vs depth:
    the mean over seeds, bars from the smallest to the largest seed's value."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [
        ("train_accuracy", "train accuracy (eval mode)"),
        ("test_accuracy", "test accuracy"),
        ("dormant_final", "dormant proportion (trained)"),
        ("grad_norm_init", "first-layer grad norm (init)"),
    ]
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.6))
    styles = {"standard": "--", "ds": "-"}
    markers = {"lif": "o", "mlf": "s"}
    offsets = {("standard", "lif"): -1.5, ("standard", "mlf"): -0.5, ("ds", "lif"): 0.5}
    seeds = sorted({s for r in summary for s in r["seeds"]})
    for ax, (key, title) in zip(axes, panels, strict=True):
        for shortcut, neuron in itertools.product(
            _items(FLAGS.config.shortcuts), _items(FLAGS.config.neurons)
        ):
            pts = sorted(
                (r["depth"], r[key])
                for r in summary
                if r["shortcut"] == shortcut and r["neuron"] == neuron and r.get(key)
            )
            if pts:
                # a small horizontal offset per network, so that the bars do not overlap
                d = np.asarray([p[0] for p in pts], float) + offsets.get((shortcut, neuron), 1.5)
                mean = np.asarray([p[1]["mean"] for p in pts])
                err = np.asarray(
                    [[p[1]["mean"] - p[1]["min"], p[1]["max"] - p[1]["mean"]] for p in pts]
                )
                label = f"{SHORTCUT_NAMES[shortcut]}, {neuron.upper()}"
                ax.errorbar(
                    d,
                    mean,
                    yerr=err.T,
                    fmt=styles[shortcut],
                    marker=markers[neuron],
                    capsize=3,
                    label=label,
                )
        ax.set_xlabel("depth")
        ax.set_title(title)
        ax.grid(alpha=0.3)
        if key == "grad_norm_init":
            ax.set_yscale("log")
    axes[0].legend(fontsize=8)
    fig.suptitle(f"mean over seeds {', '.join(map(str, seeds))}; bars: min to max", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def table(summary: list[dict]) -> str:
    """The summary as a markdown table: mean ± std (min-max) over the seeds."""
    head = (
        "| model | neuron | depth | seeds | train acc. | test acc. | dormant (init -> trained) "
        "| grad norm at layer 1 (init -> trained) | train time |\n"
        "|---|---|---|---|---|---|---|---|---|"
    )

    def acc(s):
        if s is None:
            return "diverged"
        return (
            f"{100 * s['mean']:.1f} ± {100 * s['std']:.1f} "
            f"({100 * s['min']:.1f}-{100 * s['max']:.1f})"
        )

    def pair(a, b, fmt):
        return f"{fmt(a['mean'])} -> {fmt(b['mean'])}" if b else fmt(a["mean"])

    lines = [head]
    for r in summary:
        seeds = f"{len(r['seeds'])}" + (
            f" ({len(r['diverged_seeds'])} diverged)" if r["diverged_seeds"] else ""
        )
        lines.append(
            f"| {SHORTCUT_NAMES[r['shortcut']]} | {r['neuron'].upper()} | {r['depth']} | {seeds} "
            f"| {acc(r['train_accuracy'])} | {acc(r['test_accuracy'])} "
            f"| {pair(r['dormant_init'], r['dormant_final'], lambda v: f'{100 * v:.1f} %')} "
            f"| {pair(r['grad_norm_init'], r['grad_norm_final'], lambda v: f'{v:.3g}')} "
            f"| {r['train_seconds']['mean']:.0f} s |"
        )
    return "\n".join(lines)


def settings() -> dict[str, Any]:
    """The study's settings, as recorded in its results (seeds apart: they add runs)."""
    out = {
        k: FLAGS.config[k]
        for k in (
            "depths",
            "widths",
            "time_steps",
            "train_size",
            "epochs",
            "batch_size",
            "learning_rate",
            "probe_size",
            "train_eval_size",
        )
    }
    out["depths"] = [int(d) for d in _items(out["depths"])]
    out["widths"] = [int(w) for w in _items(out["widths"])]
    return out


def previous_rows(path: str) -> dict[Run, dict]:
    """The runs of an earlier results file, by (shortcut, neuron, depth, seed); refused (a
    ``ConfigError`` naming the keys) when its settings differ from this study's."""
    try:
        previous = json.loads(Path(path).read_text())
        old = {k: v for k, v in previous["settings"].items() if k not in ("seed", "seeds")}
        for key in ("depths", "widths"):  # strings in files from before --seeds
            old[key] = [int(v) for v in old.get(key, [])]
        rows = previous["cells"]
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise config_check.ConfigError(
            f"--previous_results {path}: not a depth study results file ({e})"
        ) from None
    ours = settings()
    differ = sorted(k for k in set(old) | set(ours) if old.get(k) != ours.get(k))
    if differ:
        raise config_check.ConfigError(
            f"--previous_results {path} was run with other settings: "
            + ", ".join(f"{k}: {old.get(k)} there, {ours.get(k)} here" for k in differ)
        )
    default_seed = previous["settings"].get("seed", 0)  # files from before --seeds
    return {
        (r["shortcut"], r["neuron"], r["depth"], r.get("seed", default_seed)): {
            **r,
            "seed": r.get("seed", default_seed),
            "source": r.get("source", path),
        }
        for r in rows
    }


def main(argv: Sequence[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    if not FLAGS["verbosity"].present:
        logging.set_verbosity(logging.WARNING)
    c = FLAGS.config
    for s in _items(c.shortcuts):
        mj.nn.blocks.check_shortcut(s)
    for n in _items(c.neurons):
        if n not in NEURONS:
            raise app.UsageError(f"unknown neuron {n!r}; expected one of {sorted(NEURONS)}")
    try:
        depths = [int(d) for d in _items(c.depths)]
        seeds = sorted({int(s) for s in _items(c.seeds)})
    except ValueError:
        raise app.UsageError(
            f"config.depths and config.seeds must be integers, got {c.depths}, {c.seeds}"
        ) from None
    for d in depths:
        mj.models.stage_sizes_for_depth(d)
    if not seeds:
        raise app.UsageError("config.seeds is empty")
    runs = [
        (*c, seed)
        for c in itertools.product(_items(c.shortcuts), _items(c.neurons), depths)
        for seed in seeds
    ]
    checked = {r: config_check.validate(cell_config(*r)) for r in runs}  # before any data
    previous = previous_rows(FLAGS.previous_results) if FLAGS.previous_results else {}
    try:  # before JAX's backend starts: one CPU device per core (splitting each batch)
        cpu_devices.use_every_core([FLAGS.config.batch_size])
    except ValueError as e:
        raise config_check.ConfigError(str(e)) from None
    workdir = Path(FLAGS.workdir)
    with mj.train.RunLock(workdir):  # one study per workdir (each cell also locks its own)
        study(runs, previous, workdir, checked)


def study(
    runs: list[Run],
    previous: dict[Run, dict],
    workdir: Path,
    checked: dict[Run, config_check.Checked] | None = None,
) -> None:
    """Trains and measures ``runs`` (those in ``previous`` are taken from there), writing the
    results and the plot after every finished run so that a study stopped part way keeps
    its finished runs in ``--results_out`` (pass that file as ``--previous_results`` to go on
    from it on another machine)."""
    data = input_pipeline.get_datasets(data_config())
    subsets = {s: subset(data.train, FLAGS.config.train_size, s) for s in {r[3] for r in runs}}
    start = time.time()
    todo = [r for r in runs if r not in previous]
    done = {r: previous[r] for r in runs if r in previous}
    for r in todo:
        trained = run_cell(*r, data, subsets[r[3]], (checked or {}).get(r))
        if FLAGS.config.measure:
            done[r] = result_row(r, trained, measure_cell(*r, data, subsets[r[3]]))
            write_results(
                [done[q] for q in runs if q in done], [q for q in runs if q not in done], workdir
            )
    print(f"training done ({time.time() - start:.0f} s this run)", flush=True)
    if not FLAGS.config.measure:
        return
    summary = write_results([done[r] for r in runs], [], workdir)
    print(table(summary))


def result_row(r: Run, trained: dict, measured: dict) -> dict:
    """One run's row of the results: its training record and its measurements."""
    final = measured.get("final")
    return {
        "shortcut": r[0],
        "neuron": r[1],
        "depth": r[2],
        "seed": r[3],
        "num_params": trained.get("num_params"),
        "train_seconds": trained.get("wall_seconds", 0.0),
        "diverged": trained.get("diverged"),
        "test_accuracy": trained.get("final_test_accuracy"),
        "train_accuracy": measured.get("train_accuracy"),
        "dormant_init": measured["init"]["dormant"],
        "dormant_final": final and final["dormant"],
        "dormant_per_layer_init": measured["init"]["dormant_per_layer"],
        "dormant_per_layer_final": final and final["dormant_per_layer"],
        "grad_norm_init": measured["init"]["first_layer_grad_norm"],
        "grad_norm_final": final and final["first_layer_grad_norm"],
    }


def write_results(rows: list[dict], pending: list[Run], workdir: Path) -> list[dict]:
    """Writes the results of the finished ``rows`` (``pending``: the runs still to do, empty
    once the study is complete) and their plot; returns their summary."""
    summary = summarise(rows)
    results = {
        "settings": {**settings(), "seeds": sorted({r["seed"] for r in rows})},
        "devices": str(jax.devices()),
        "pending": [list(r) for r in pending],
        "summary": summary,
        "cells": rows,
    }
    text = json.dumps(results, indent=2) + "\n"
    mj.train.write_atomically(workdir / "results.json", text)  # a kill never leaves half a file
    plot(summary, workdir / "depth_study.png")
    if FLAGS.results_out:
        mj.train.write_atomically(Path(FLAGS.results_out), text)
    if FLAGS.plot_out:
        plot(summary, Path(FLAGS.plot_out))
    return summary


if __name__ == "__main__":
    reexec_with_jemalloc()
    try:
        app.run(main)
    except (*trainer.USER_ERRORS, OSError) as e:
        raise SystemExit(f"error: {e}") from None
