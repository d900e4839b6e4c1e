"""Where a preset's train step spends its time: convolutions, tdBN or the neurons.

    python -m experiments.bench.profile [--presets cifar10 gesture cifar10dvs fashion_mnist]
        [--repeats 3] [--out experiments/bench/results/profile.json]

A profile by ablation, on one device, at the paper's batch size: forward+backward of the loss
for the full model, then with every MLF layer replaced by the identity ("no neurons"), then
with tdBN replaced by the identity as well ("convs only": convolutions, pooling and the dense
head). Differences give each part's time. Beside each variant: XLA's FLOP and byte counts of the
compiled program, and the two floors measured in the same run (FLOPs / matmul rate, bytes / copy
bandwidth). Layers are swapped with ``flax.linen.intercept_methods``; the model code is not
touched. Timing: after compilation, ``block_until_ready``, median of ``--repeats`` runs.
"""

from __future__ import annotations

import argparse
import functools
import importlib
import json
from pathlib import Path

import jax
import numpy as np
from flax import linen as nn

import mlf_jax as mj
from experiments.bench.common import copy_bandwidth, matmul_rate, time_compiled
from experiments.bench.train_step import PRESETS
from experiments.models import build_model

VARIANTS = {
    "full": (),
    "no neurons": (mj.nn.MLF,),
    "convs only": (mj.nn.MLF, mj.nn.TdBatchNorm),
}


def _identity_for(types: tuple[type, ...]):
    """A method interceptor that makes ``__call__`` of modules of ``types`` the identity."""

    def interceptor(next_fun, args, kwargs, context):
        if context.method_name == "__call__" and isinstance(context.module, types):
            return args[0]
        return next_fun(*args, **kwargs)

    return interceptor


def measure(preset: str, repeats: int, flop_rate: float, bandwidth: float) -> list[dict]:
    """Forward+backward time, FLOPs and bytes of each variant of ``preset``."""
    module, shape = PRESETS[preset]
    config = importlib.import_module(f"experiments.configs.{module}").get_config()
    config.cross_device_bn = False
    model = build_model(config)
    rng = np.random.default_rng(0)
    image = rng.integers(0, 3, (config.batch_size, *shape)).astype(np.float32)
    x = mj.train.step.model_input(image)
    labels = rng.integers(0, 10, config.batch_size).astype(np.int32)
    rows = []
    for name, types in VARIANTS.items():
        with nn.intercept_methods(_identity_for(types)):
            variables = model.init(jax.random.key(0), x[:, :2] if x.ndim == 5 else x[:2])

        def loss(params, batch_stats, x, types=types):
            with nn.intercept_methods(_identity_for(types)):
                logits, _ = model.apply(
                    {"params": params, "batch_stats": batch_stats},
                    x,
                    train=True,
                    mutable=["batch_stats"],
                )
            return mj.train.cross_entropy(logits, labels)

        grad = jax.grad(loss)
        args = (variables["params"], variables.get("batch_stats", {}), x)
        cost = jax.jit(grad).lower(*args).compile().cost_analysis()
        compile_s, seconds = time_compiled(grad, *args, repeats=repeats)
        flops, nbytes = float(cost["flops"]), float(cost["bytes accessed"])
        rows.append(
            {
                "preset": preset,
                "variant": name,
                "batch_size": config.batch_size,
                "time_steps": config.model.time_steps,
                "seconds": seconds,
                "compile_seconds": compile_s,
                "flops": flops,
                "bytes_accessed": nbytes,
                "flop_floor_seconds": flops / flop_rate,
                "byte_floor_seconds": nbytes / bandwidth,
                "achieved_flops_per_second": flops / seconds,
            }
        )
        print(
            f"{preset:<14}{name:<12}{seconds:>9.3f} s  {flops / 1e9:>8.1f} GFLOP "
            f"{flops / seconds / 1e9:>7.1f} GFLOP/s  {nbytes / 1e9:>7.2f} GB "
            f"(floors {flops / flop_rate:.3f} s / {nbytes / bandwidth:.3f} s)",
            flush=True,
        )
    return rows


def neuron_layers(model: nn.Module, x: jax.Array) -> list[tuple[tuple[int, ...], mj.nn.MLF]]:
    """The input shape and module of every MLF call in one forward pass of ``model`` on ``x``
    (traced with ``jax.eval_shape``: nothing is computed)."""
    calls = []

    def interceptor(next_fun, args, kwargs, context):
        if context.method_name == "__call__" and isinstance(context.module, mj.nn.MLF):
            calls.append((tuple(args[0].shape), context.module))
        return next_fun(*args, **kwargs)

    with nn.intercept_methods(interceptor):
        jax.eval_shape(functools.partial(model.init, train=True), jax.random.key(0), x)
    return calls


def measure_neurons(preset: str, repeats: int, bandwidth: float) -> dict:
    """Forward+backward of every neuron layer of ``preset`` timed alone, summed.

    A direct measure of the neurons' share, beside the ablation (whose difference of two
    whole-step times also contains changed fusion decisions around the removed layers).
    Each distinct (shape, settings) is compiled and timed once and counted as often as it
    occurs. Floor: 16 bytes per element (read x and the output cotangent, write o and dx).
    """
    module, shape = PRESETS[preset]
    config = importlib.import_module(f"experiments.configs.{module}").get_config()
    config.cross_device_bn = False
    model = build_model(config)
    x = mj.train.step.model_input(np.zeros((config.batch_size, *shape), np.float32))
    counts: dict = {}
    for shape_, layer in neuron_layers(model, x):
        key = (shape_, tuple(layer.thresholds), layer.tau, layer.detach_reset, layer.unroll)
        counts[key] = counts.get(key, 0) + 1
    seconds = elements = 0.0
    for (shape_, thresholds, tau, detach_reset, unroll), count in counts.items():

        def fwd_bwd(x, g, thresholds=thresholds, tau=tau, detach=detach_reset, unroll=unroll):
            f = functools.partial(
                mj.mlf, thresholds=thresholds, tau=tau, detach_reset=detach, unroll=unroll
            )
            return jax.vjp(f, x)[1](g)[0]

        xs = jax.random.uniform(jax.random.key(0), shape_, maxval=3.0)
        g = jax.random.normal(jax.random.key(1), shape_)
        seconds += count * time_compiled(fwd_bwd, xs, g, repeats=repeats)[1]
        elements += count * float(np.prod(shape_))
    floor = 16 * elements / bandwidth
    print(
        f"{preset:<14}{'neurons alone':<12}{seconds:>9.3f} s  {sum(counts.values())} layers, "
        f"{elements / 1e6:.1f} M elements (memory floor {floor:.3f} s, {seconds / floor:.1f}x)",
        flush=True,
    )
    return {
        "preset": preset,
        "layers": sum(counts.values()),
        "elements": elements,
        "seconds": seconds,
        "memory_floor_seconds": floor,
    }


def breakdown(rows: list[dict]) -> dict:
    """Seconds in convolutions (+ pooling, head), tdBN and neurons, from the three variants."""
    t = {r["variant"]: r["seconds"] for r in rows}
    return {
        "preset": rows[0]["preset"],
        "full_seconds": t["full"],
        "convs_seconds": t["convs only"],
        "tdbn_seconds": t["no neurons"] - t["convs only"],
        "neuron_seconds": t["full"] - t["no neurons"],
    }


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--presets", nargs="+", default=list(PRESETS), choices=list(PRESETS))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", default="experiments/bench/results/profile.json")
    args = parser.parse_args(argv)
    flop_rate, bandwidth = matmul_rate(), copy_bandwidth()
    print(f"matmul {flop_rate / 1e9:.1f} GFLOP/s, copy bandwidth {bandwidth / 1e9:.1f} GB/s")
    rows, parts = [], []
    for preset in args.presets:
        r = measure(preset, args.repeats, flop_rate, bandwidth)
        rows += r
        parts.append(
            breakdown(r) | {"neurons_alone": measure_neurons(preset, args.repeats, bandwidth)}
        )
    print(
        f"\n{'preset':<14}{'step s':>9}{'convs':>14}{'tdBN':>14}{'neurons':>14}"
        f"{'neurons alone':>20}"
    )
    for p in parts:
        full = p["full_seconds"]
        cells = "".join(
            f"{p[k]:>7.2f} ({100 * p[k] / full:>3.0f}%)"
            for k in ("convs_seconds", "tdbn_seconds", "neuron_seconds")
        )
        alone = p["neurons_alone"]["seconds"]
        print(f"{p['preset']:<14}{full:>9.2f}{cells}{alone:>13.2f} ({100 * alone / full:>3.0f}%)")
    out = {
        "matmul_flops_per_second": flop_rate,
        "copy_bytes_per_second": bandwidth,
        "variants": rows,
        "breakdown": parts,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
