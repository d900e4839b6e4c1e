"""The main job's net trained in Flax NNX (``mlf_jax.nnx``) and in Linen
(``mlf_jax.train.train_step``) with the same settings, on Fashion-MNIST, for a few hundred
steps: the test accuracy of each, per seed (the figures of docs/guides/nnx.md).

Settings of experiments/configs/fashion_mnist.py (DS-ResNet-8 16/32/64, T = 1, learned
thresholds, tdBN to 1.0, SGD with momentum 0.9 and weight decay 1e-4, batch 128, learning rate
0.6 with a 10 % warm-up and a cosine decay), over ``--steps`` steps instead of four epochs.
All three contenders see the same batches in the same order for a seed:

- ``linen``: Linen's weights drawn by ``model.init(key(seed))``;
- ``nnx``: NNX's own weights drawn from ``nnx.Rngs(seed)`` (another draw from the same
  initialisers);
- ``nnx_linen_init``: NNX started from Linen's initial weights (``mj.nnx.from_linen``), so
  that it differs from ``linen`` only in the API that trains it.

    nice -n 10 python -m experiments.nnx_vs_linen --steps 300 --seeds 0 1 2 3 4 5
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

import mlf_jax as mj
import mlf_jax.nnx
from experiments.configs import fashion_mnist as fm_config
from experiments.models import build_model
from mlf_jax.data import fashion_mnist

OUT = Path(__file__).resolve().parent / "results" / "nnx_vs_linen.json"
CONTENDERS = ("linen", "nnx", "nnx_linen_init")


def data() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    train = fashion_mnist.load(fashion_mnist.DEFAULT_DIR, "train")
    test = fashion_mnist.load(fashion_mnist.DEFAULT_DIR, "test")
    return (
        fashion_mnist.normalize(train["image"]),
        np.asarray(train["label"]),
        fashion_mnist.normalize(test["image"]),
        np.asarray(test["label"]),
    )


def optimizer(config: Any, steps: int) -> optax.GradientTransformation:
    schedule = mj.train.learning_rate_schedule(
        config.learning_rate, steps, 1, kind=config.schedule, warmup_epochs=config.warmup_epochs
    )
    return mj.train.sgd(schedule)


def batches(seed: int, n: int, steps: int, batch: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    order = np.concatenate([rng.permutation(n) for _ in range(steps * batch // n + 1)])
    return [order[i * batch : (i + 1) * batch] for i in range(steps)]


def initial_variables(model, seed: int, x: np.ndarray) -> dict[str, Any]:
    """Linen's initial variables for ``seed`` (what :func:`mlf_jax.train.create_train_state`
    draws)."""
    state = mj.train.create_train_state(model, mj.train.sgd(0.0), jax.random.key(seed), x)
    return {"params": state.params, "batch_stats": state.batch_stats}


def run_linen(model, tx, seed, xs, ys, test_x, test_y, order, eval_batch) -> dict[str, float]:
    """Trains ``model`` in Linen from its ``seed`` draw on the batches ``order``; the test
    accuracy and the training seconds."""
    state = mj.train.create_train_state(model, tx, jax.random.key(seed), jnp.asarray(xs[:2]))
    step = jax.jit(mj.train.train_step)
    start = time.perf_counter()
    for idx in order:
        state, metrics = step(state, {"image": xs[idx], "label": ys[idx]})
    jax.block_until_ready(state)
    seconds = time.perf_counter() - start

    @jax.jit
    def predict(x):
        variables = {"params": state.params, "batch_stats": state.batch_stats}
        return jnp.argmax(model.apply(variables, x), -1)

    return {"accuracy": accuracy(predict, test_x, test_y, eval_batch), "train_s": seconds}


def run_nnx(
    model, tx, seed, xs, ys, test_x, test_y, order, eval_batch, variables=None
) -> dict[str, float]:
    """Trains ``model`` in NNX, from ``variables`` (Linen's) or else its own ``seed`` draw,
    on the batches ``order``; the test accuracy and the training seconds."""
    net = mj.nnx.from_linen(model, variables, rngs=None if variables else nnx.Rngs(seed))
    opt = nnx.Optimizer(net, tx, wrt=nnx.Param)

    step = nnx.jit(mlf_jax.nnx.train_step)

    net.train()
    start = time.perf_counter()
    for idx in order:
        step(net, opt, xs[idx], ys[idx])
    jax.block_until_ready(nnx.state(net))
    seconds = time.perf_counter() - start

    net.eval()
    predict = nnx.jit(lambda net, x: jnp.argmax(net(x), -1))
    return {
        "accuracy": accuracy(lambda x: predict(net, x), test_x, test_y, eval_batch),
        "train_s": seconds,
    }


def accuracy(predict, x, y, batch) -> float:
    hits = sum(
        int((predict(x[i : i + batch]) == y[i : i + batch]).sum()) for i in range(0, len(x), batch)
    )
    return hits / len(x)


#: The table's column of each contender.
HEADERS = {
    "linen": "Linen",
    "nnx_linen_init": "NNX, from Linen's initial weights",
    "nnx": "NNX, its own initial weights",
}


def table(record: dict[str, Any]) -> str:
    """The Markdown table of a results record: test accuracy per seed and contender, then
    the mean and the standard deviation over the seeds (the table of docs/guides/nnx.md)."""
    cols = list(HEADERS)
    lines = [
        "| seed | " + " | ".join(HEADERS[c] for c in cols) + " |",
        "|---:|" + "---:|" * len(cols),
    ]
    for run in record["runs"]:
        cells = " | ".join(f"{100 * run[c]['accuracy']:.2f} %" for c in cols)
        lines.append(f"| {run['seed']} | {cells} |")
    summary = " | ".join(
        f"{100 * record['summary'][c]['mean']:.2f} % ({100 * record['summary'][c]['std']:.2f})"
        for c in cols
    )
    lines.append(f"| mean (std over seeds) | {summary} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)

    config = fm_config.get_config()
    config.cross_device_bn = False  # one device
    model = build_model(config)
    xs, ys, test_x, test_y = data()
    tx = optimizer(config, args.steps)
    rows = []
    for seed in args.seeds:
        order = batches(seed, len(xs), args.steps, config.batch_size)
        common = (model, tx, seed, xs, ys, test_x, test_y, order, config.eval_batch_size)
        start = initial_variables(model, seed, jnp.asarray(xs[:2]))
        row = {
            "seed": seed,
            "linen": run_linen(*common),
            "nnx": run_nnx(*common),
            "nnx_linen_init": run_nnx(*common, variables=start),
        }
        print(json.dumps(row), flush=True)
        rows.append(row)
    summary = {
        api: {
            "mean": float(np.mean([r[api]["accuracy"] for r in rows])),
            "std": float(np.std([r[api]["accuracy"] for r in rows], ddof=1))
            if len(rows) > 1
            else 0.0,
        }
        for api in CONTENDERS
    }
    record = {
        "steps": args.steps,
        "batch_size": config.batch_size,
        "runs": rows,
        "summary": summary,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(record, indent=1) + "\n")
    print(json.dumps(summary))
    print(table(record))


if __name__ == "__main__":
    main()
