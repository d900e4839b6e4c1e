"""What each way of adding capacity to the converged Fashion-MNIST model costs per step.

    python -m experiments.bench.converged_cost [--repeats 5]
        [--out experiments/bench/results/converged_cost.json]

The train step of ``experiments/configs/fashion_mnist_converged_learned.py`` (DS-ResNet-8,
batch 256, one device) at its widths 32/64/128 and T = 1, and with wider layers or more time
steps: after compilation, the candidates are timed in turn (alternated, so that a load on the
machine weighs on each alike), ``--repeats`` rounds; the median wall and CPU seconds of each,
and its ratio to the first. Ratios are what carries over to another machine.
"""

from __future__ import annotations

import argparse
import time

import jax
import jax.numpy as jnp
import numpy as np

import mlf_jax as mj
from experiments.bench.common import positive_int, write_json
from experiments.configs import fashion_mnist_converged_learned
from experiments.models import build_model

#: name -> (widths, time steps); the first is the shipped converged model's.
CANDIDATES = {
    "32/64/128, T=1": ((32, 64, 128), 1),
    "48/96/192, T=1": ((48, 96, 192), 1),
    "64/128/256, T=1": ((64, 128, 256), 1),
    "32/64/128, T=2": ((32, 64, 128), 2),
}


def prepare(widths: tuple[int, ...], time_steps: int, batch: int = 256):
    """``(step, params)``: one compiled SGD step of the candidate on a random batch, and its
    parameter count."""
    config = fashion_mnist_converged_learned.get_config()
    config.model.widths, config.model.time_steps = widths, time_steps
    config.cross_device_bn = False  # one device
    model = build_model(config)
    rng = np.random.default_rng(0)
    batch_ = {
        "image": jnp.asarray(rng.normal(size=(batch, 28, 28, 1)), jnp.float32),
        "label": jnp.asarray(rng.integers(0, 10, batch), jnp.int32),
    }
    state = mj.train.create_train_state(
        model, mj.train.sgd(0.1), jax.random.key(0), batch_["image"][:2]
    )
    step = jax.jit(mj.train.train_step)
    jax.block_until_ready(step(state, batch_))  # compiles

    def run() -> tuple[float, float]:
        wall, cpu = time.perf_counter(), time.process_time()
        jax.block_until_ready(step(state, batch_))
        return time.perf_counter() - wall, time.process_time() - cpu

    return run, mj.models.num_params(state.params)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=positive_int, default=5)
    parser.add_argument("--out", default="experiments/bench/results/converged_cost.json")
    args = parser.parse_args(argv)
    prepared = {name: prepare(*spec) for name, spec in CANDIDATES.items()}
    times: dict[str, list[tuple[float, float]]] = {name: [] for name in CANDIDATES}
    for _ in range(args.repeats):
        for name, (run, _) in prepared.items():
            times[name].append(run())
    rows = []
    for name, runs in times.items():
        wall, cpu = (float(np.median([r[i] for r in runs])) for i in (0, 1))
        rows.append({"candidate": name, "params": prepared[name][1], "wall_s": wall, "cpu_s": cpu})
    for row in rows:
        row["wall_ratio"] = row["wall_s"] / rows[0]["wall_s"]
    print("| candidate | parameters | step (wall) | step (CPU) | wall / first |")
    print("|---|---:|---:|---:|---:|")
    for r in rows:
        print(
            f"| {r['candidate']} | {r['params']:,} | {r['wall_s']:.2f} s | {r['cpu_s']:.2f} s "
            f"| {r['wall_ratio']:.2f} |"
        )
    write_json(args.out, {"repeats": args.repeats, "batch": 256, "rows": rows})


if __name__ == "__main__":
    main()
