"""The train step of one net in Flax NNX (``mlf_jax.nnx``) and in Linen, alternated in one run.

The main job's net (experiments/configs/fashion_mnist.py: DS-ResNet-8 16/32/64, T = 1,
learned thresholds) at its batch (128 Fashion-MNIST-sized images), one device, the same SGD
(momentum, weight decay). Variants:

* ``linen``: a ``jax.jit`` step of the Linen model: ``apply(train=True,
  mutable=['batch_stats'])``, ``jax.value_and_grad``, the Optax update (what
  ``mj.train.train_step`` does, less its metrics).
* ``nnx.jit``: an ``nnx.jit`` step of ``mlf_jax.nnx.from_linen(model)`` and an
  ``nnx.Optimizer`` (state updated in place).
* ``nnx.cached_partial``: the same step through ``nnx.cached_partial(step, net, opt)``, which
  keeps the module graph's traversal between calls (Flax's advice for small steps).

Each round runs ``--steps`` steps of every variant back to back (order rotated per round)
and records seconds per step, wall-clock and CPU (``time.process_time``: all of the
process's threads, which a machine shared with other work disturbs less); the table gives
the medians over the rounds and each NNX variant's ratio to Linen's.

    nice -n 10 python -m experiments.bench.nnx_step --rounds 7 --steps 5
"""

from __future__ import annotations

import argparse
import platform
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

import mlf_jax as mj
import mlf_jax.nnx
from experiments.bench.common import positive_int, write_json
from experiments.configs import fashion_mnist
from experiments.models import build_model


def _variants(batch: int) -> dict:
    config = fashion_mnist.get_config()
    config.cross_device_bn = False
    model = build_model(config)
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.normal(size=(batch, 28, 28, 1)).astype(np.float32))
    y = jnp.asarray(rng.integers(0, 10, batch))
    tx = mj.train.sgd(0.1)

    variables = model.init(jax.random.key(0), x[:2])
    box = {"params": variables["params"], "stats": variables["batch_stats"]}
    box["opt"] = tx.init(box["params"])

    @jax.jit
    def linen_step(params, stats, opt_state, x, y):
        def loss_fn(params):
            logits, updates = model.apply(
                {"params": params, "batch_stats": stats}, x, train=True, mutable=["batch_stats"]
            )
            return mj.losses.cross_entropy(logits, y), updates["batch_stats"]

        (loss, stats), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), stats, opt_state, loss

    def linen() -> object:
        box["params"], box["stats"], box["opt"], loss = linen_step(
            box["params"], box["stats"], box["opt"], x, y
        )
        return loss

    def make_nnx():
        net = mlf_jax.nnx.from_linen(model, rngs=nnx.Rngs(0))
        net.train()
        return net, nnx.Optimizer(net, tx, wrt=nnx.Param)

    step = nnx.jit(mlf_jax.nnx.train_step)

    net, opt = make_nnx()
    cached = nnx.cached_partial(step, *make_nnx())
    return {
        "linen": linen,
        "nnx.jit": lambda: step(net, opt, x, y),
        "nnx.cached_partial": lambda: cached(x, y),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=positive_int, default=128)
    parser.add_argument("--rounds", type=positive_int, default=7)
    parser.add_argument("--steps", type=positive_int, default=5, help="steps per round")
    parser.add_argument("--out", default="experiments/bench/results/nnx_step.json")
    args = parser.parse_args(argv)

    variants = _variants(args.batch)
    for fn in variants.values():  # compile and warm up
        jax.block_until_ready(fn())
        jax.block_until_ready(fn())
    names = list(variants)
    times: dict[str, list[float]] = {name: [] for name in names}
    cpu: dict[str, list[float]] = {name: [] for name in names}
    for r in range(args.rounds):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            t0, c0 = time.perf_counter(), time.process_time()
            for _ in range(args.steps):
                out = variants[name]()
            jax.block_until_ready(out)
            times[name].append((time.perf_counter() - t0) / args.steps)
            cpu[name].append((time.process_time() - c0) / args.steps)
    base, cpu_base = float(np.median(times["linen"])), float(np.median(cpu["linen"]))
    table = {
        name: {
            "median_s": float(np.median(t)),
            "min_s": float(np.min(t)),
            "ratio_to_linen": float(np.median(t)) / base,
            "median_cpu_s": float(np.median(cpu[name])),
            "cpu_ratio_to_linen": float(np.median(cpu[name])) / cpu_base,
            "per_round_s": t,
            "per_round_cpu_s": cpu[name],
        }
        for name, t in times.items()
    }
    print(
        f"{'variant':<20} {'median ms':>10} {'min ms':>8} {'vs linen':>9} "
        f"{'CPU ms':>8} {'CPU vs linen':>13}"
    )
    for name, row in table.items():
        print(
            f"{name:<20} {1e3 * row['median_s']:>10.1f} {1e3 * row['min_s']:>8.1f} "
            f"{row['ratio_to_linen']:>9.3f} {1e3 * row['median_cpu_s']:>8.1f} "
            f"{row['cpu_ratio_to_linen']:>13.3f}"
        )
    write_json(
        args.out,
        {
            "net": "fashion_mnist config (DS-ResNet-8 16/32/64, T=1, learned thresholds)",
            "batch": args.batch,
            "rounds": args.rounds,
            "steps_per_round": args.steps,
            "devices": [str(d) for d in jax.devices()],
            "machine": platform.processor() or platform.machine(),
            "variants": table,
        },
    )


if __name__ == "__main__":
    main()
