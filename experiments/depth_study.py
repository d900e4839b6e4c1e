"""Depth study on Fashion-MNIST: do spiking nets degrade with depth; do MLF and DS-ResNet help?

The grid is {spiking ResNet, DS-ResNet} x {LIF, MLF K=3} x depths, every cell trained with the
same budget (data, epochs, batch, optimiser, seed). For each cell it records train and test
accuracy, the proportion of dormant units and the gradient norm at the first layer,
at initialisation and after training::

    python -m experiments.depth_study --workdir=workdir/depth_study   # train + measure + plot

Resumable: a finished cell is skipped; an interrupted one resumes from its last checkpoint
(``<workdir>/<cell>/checkpoints``). The aggregated results go to ``<workdir>/results.json`` and
the plot to ``<workdir>/depth_study.png`` (``--results_out`` / ``--plot_out`` copy them elsewhere,
e.g. into ``experiments/results/`` for the README).
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

import mlf_jax as mj
from experiments import config_check, input_pipeline, run_identity, trainer
from experiments.allocator import reexec_with_jemalloc
from experiments.configs import fashion_mnist as fashion_mnist_config
from experiments.models import build_model

FLAGS = flags.FLAGS
flags.DEFINE_string("workdir", "workdir/depth_study", "One sub-directory per cell goes here.")
flags.DEFINE_string("data_dir", "", "Fashion-MNIST IDX files (default: the config's data_dir).")
flags.DEFINE_list("depths", ["8", "32", "68"], "Depths 6n + 2.")
flags.DEFINE_list("widths", ["8", "16", "32"], "Channels of the three stages.")
flags.DEFINE_list("shortcuts", ["standard", "ds"], "'standard' (spiking ResNet) and/or 'ds'.")
flags.DEFINE_list("neurons", ["lif", "mlf"], "'lif' (K = 1) and/or 'mlf' (K = 3).")
flags.DEFINE_integer("time_steps", 2, "T (direct encoding).")
flags.DEFINE_integer("train_size", 12000, "Training examples (a fixed random subset).")
flags.DEFINE_integer("epochs", 3, "Epochs over the training subset.")
flags.DEFINE_integer("batch_size", 64, "Global batch size.")
flags.DEFINE_float("learning_rate", 0.1, "Peak learning rate (cosine decay, 0.1-epoch warm-up).")
flags.DEFINE_integer("probe_size", 256, "Examples used for the dormant and gradient probes.")
flags.DEFINE_integer("train_eval_size", 5000, "Training examples used for train accuracy.")
flags.DEFINE_integer("seed", 0, "Seed of the subset, the initialisation and the data order.")
flags.DEFINE_bool("measure", True, "Measure finished cells (needs mlf_jax.analysis).")
flags.DEFINE_string("results_out", "", "Also write the aggregated results JSON here.")
flags.DEFINE_string("plot_out", "", "Also write the plot here.")


NEURONS = {"lif": (0.6,), "mlf": (0.6, 1.6, 2.6)}
SHORTCUT_NAMES = {"standard": "spiking ResNet", "ds": "DS-ResNet"}


def cell_name(shortcut: str, neuron: str, depth: int) -> str:
    return f"{shortcut}_{neuron}_d{depth}"


def cell_config(shortcut: str, neuron: str, depth: int) -> Any:
    """The Fashion-MNIST config with this cell's model and the study's common budget."""
    config = data_config()
    config.model.depth = depth
    config.model.widths = tuple(int(w) for w in FLAGS.widths)
    config.model.shortcut = shortcut
    config.model.thresholds = NEURONS[neuron]
    config.model.time_steps = FLAGS.time_steps
    config.batch_size = FLAGS.batch_size
    config.num_epochs = FLAGS.epochs
    config.learning_rate = FLAGS.learning_rate
    config.seed = FLAGS.seed
    config.log_every = 20
    config.study_train_size = FLAGS.train_size  # the subset is part of the cell's identity
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


def run_cell(shortcut: str, neuron: str, depth: int, data: Any, train: Any) -> dict:
    """Trains one cell with the experiments' trainer (resuming if interrupted) and saves
    its final variables."""
    name = cell_name(shortcut, neuron, depth)
    cdir = Path(FLAGS.workdir) / name
    done = cdir / "train.json"
    config = cell_config(shortcut, neuron, depth)
    if done.exists():  # trained before: only if with these settings
        try:
            run_identity.check(cdir, config)
        except run_identity.ConfigMismatchError as e:
            raise run_identity.ConfigMismatchError(
                f"{str(e).split('. ')[0]}. The study in {FLAGS.workdir} was run with other "
                "settings: use a new --workdir for these"
            ) from None
        return json.loads(done.read_text())
    print(f"== {name}: {SHORTCUT_NAMES[shortcut]}-{depth}, {neuron.upper()}", flush=True)
    cell_data = input_pipeline.Data(train, data.test, data.preprocess)
    try:
        out = trainer.train_and_evaluate(config, cdir, data=cell_data)
    except trainer.DivergenceError as e:  # a diverged cell is a result, not a crash
        out = {"state": None, "diverged": str(e)}
    state = out.pop("state")
    if state is not None:
        if out.get("preempted"):
            raise SystemExit(f"{out['stopped_by']}: stopped; run the same command to resume")
        variables = {"params": state.params, "batch_stats": state.batch_stats}
        (cdir / "final_variables.msgpack").write_bytes(serialization.to_bytes(variables))
    out.update(shortcut=shortcut, neuron=neuron, depth=depth)
    done.write_text(json.dumps(out, indent=2) + "\n")
    return out


def measure_cell(shortcut: str, neuron: str, depth: int, data: Any, train: Any) -> dict:
    """Train/test accuracy, dormant proportion and gradient norm at init and after training."""
    name = cell_name(shortcut, neuron, depth)
    cdir = Path(FLAGS.workdir) / name
    path = cdir / "measure.json"
    settings = {"probe_size": FLAGS.probe_size, "train_eval_size": FLAGS.train_eval_size}
    if path.exists():  # measured before: only if with these settings
        result = json.loads(path.read_text())
        if result.get("settings") == settings:
            return result
    config = cell_config(shortcut, neuron, depth)
    config.cross_device_bn = False  # the probes run on one device, outside shard_map
    model = build_model(config)
    pre = data.preprocess
    probe_batch = pre(data.test[np.arange(FLAGS.probe_size)], False)
    sample = probe_batch["image"][:2]
    init = jax.jit(lambda r, x: model.init(r, x, train=False))(jax.random.key(config.seed), sample)
    result: dict[str, Any] = {
        "settings": settings,
        "init": probe(model, init, probe_batch, NEURONS[neuron]),
    }
    final_path = cdir / "final_variables.msgpack"
    if final_path.exists():
        variables = serialization.from_bytes(init, final_path.read_bytes())
        result["final"] = probe(model, variables, probe_batch, NEURONS[neuron])
        n = min(FLAGS.train_eval_size, len(train))
        result["train_accuracy"] = accuracy(model, variables, subset(train, n, 1), pre)
    path.write_text(json.dumps(result, indent=2) + "\n")
    return result


def plot(rows: list[dict], path: Path) -> None:
    """Test accuracy, train accuracy, dormant proportion and first-layer gradient vs depth."""
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
    for ax, (key, title) in zip(axes, panels, strict=True):
        for shortcut, neuron in itertools.product(FLAGS.shortcuts, FLAGS.neurons):
            pts = sorted(
                (r["depth"], r[key])
                for r in rows
                if r["shortcut"] == shortcut and r["neuron"] == neuron and r.get(key) is not None
            )
            if pts:
                d, v = zip(*pts, strict=True)
                label = f"{SHORTCUT_NAMES[shortcut]}, {neuron.upper()}"
                ax.plot(d, v, styles[shortcut], marker=markers[neuron], label=label)
        ax.set_xlabel("depth")
        ax.set_title(title)
        ax.grid(alpha=0.3)
        if key == "grad_norm_init":
            ax.set_yscale("log")
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def table(rows: list[dict]) -> str:
    """The results as a markdown table."""
    head = (
        "| model | neuron | depth | train acc. | test acc. | dormant (init -> trained) "
        "| grad norm at layer 1 (init -> trained) | train time |\n|---|---|---|---|---|---|---|---|"
    )

    def pct(v):
        return "diverged" if v is None else f"{100 * v:.1f} %"

    def pair(a, b, fmt):
        return f"{fmt(a)} -> {fmt(b)}" if b is not None else fmt(a)

    lines = [head]
    for r in rows:
        lines.append(
            f"| {SHORTCUT_NAMES[r['shortcut']]} | {r['neuron'].upper()} | {r['depth']} "
            f"| {pct(r.get('train_accuracy'))} | {pct(r.get('test_accuracy'))} "
            f"| {pair(r['dormant_init'], r.get('dormant_final'), lambda v: f'{100 * v:.1f} %')} "
            f"| {pair(r['grad_norm_init'], r.get('grad_norm_final'), lambda v: f'{v:.3g}')} "
            f"| {r['train_seconds']:.0f} s |"
        )
    return "\n".join(lines)


def main(argv: Sequence[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    if not FLAGS["verbosity"].present:
        logging.set_verbosity(logging.WARNING)
    for s in FLAGS.shortcuts:
        mj.nn.blocks.check_shortcut(s)
    for n in FLAGS.neurons:
        if n not in NEURONS:
            raise app.UsageError(f"unknown neuron {n!r}; expected one of {sorted(NEURONS)}")
    depths = [int(d) for d in FLAGS.depths]
    for d in depths:
        mj.models.stage_sizes_for_depth(d)
    cells = list(itertools.product(FLAGS.shortcuts, FLAGS.neurons, depths))
    for c in cells:  # every cell's config, before any data is read
        config_check.validate(cell_config(*c))
    workdir = Path(FLAGS.workdir)
    with mj.train.RunLock(workdir):  # one study per workdir (each cell also locks its own)
        study(cells, workdir)


def study(cells: list[tuple[str, str, int]], workdir: Path) -> None:
    """Trains, measures, tabulates and plots ``cells``."""
    data = input_pipeline.get_datasets(data_config())
    train = subset(data.train, FLAGS.train_size, FLAGS.seed)
    start = time.time()
    trained = {c: run_cell(*c, data, train) for c in cells}
    print(f"training done ({time.time() - start:.0f} s this run)", flush=True)
    if not FLAGS.measure:
        return
    rows = []
    for c in cells:
        t, m = trained[c], measure_cell(*c, data, train)
        final = m.get("final")
        rows.append(
            {
                "shortcut": c[0],
                "neuron": c[1],
                "depth": c[2],
                "num_params": t.get("num_params"),
                "train_seconds": t.get("wall_seconds", 0.0),
                "diverged": t.get("diverged"),
                "test_accuracy": t.get("final_test_accuracy"),
                "train_accuracy": m.get("train_accuracy"),
                "dormant_init": m["init"]["dormant"],
                "dormant_final": final and final["dormant"],
                "dormant_per_layer_init": m["init"]["dormant_per_layer"],
                "dormant_per_layer_final": final and final["dormant_per_layer"],
                "grad_norm_init": m["init"]["first_layer_grad_norm"],
                "grad_norm_final": final and final["first_layer_grad_norm"],
            }
        )
    settings = {
        k: FLAGS[k].value
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
            "seed",
        )
    }
    settings["depths"] = [int(d) for d in settings["depths"]]
    settings["widths"] = [int(w) for w in settings["widths"]]
    results = {"settings": settings, "devices": str(jax.devices()), "cells": rows}
    text = json.dumps(results, indent=2) + "\n"
    (workdir / "results.json").write_text(text)
    plot(rows, workdir / "depth_study.png")
    if FLAGS.results_out:
        Path(FLAGS.results_out).write_text(text)
    if FLAGS.plot_out:
        plot(rows, Path(FLAGS.plot_out))
    print(table(rows))


if __name__ == "__main__":
    reexec_with_jemalloc()
    try:
        app.run(main)
    except (*trainer.USER_ERRORS, OSError) as e:
        raise SystemExit(f"error: {e}") from None
