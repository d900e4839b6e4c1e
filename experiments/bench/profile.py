"""Where a preset's train step spends its time: convolutions, tdBN or the neurons.

    python -m experiments.bench.profile [--presets cifar10 gesture cifar10dvs fashion_mnist]
        [--repeats 3] [--out experiments/bench/results/profile.json]

A profile by ablation, on one device, at the paper's batch size: forward+backward of the loss
for the full model, then with every neuron layer replaced by the identity ("no neurons"), then
with tdBN replaced by the identity as well ("convs only": convolutions, pooling and the dense
head). Differences give each part's time. Beside each variant: XLA's FLOP and byte counts of the
compiled program, and the two floors measured in the same run (FLOPs / matmul rate, bytes / copy
bandwidth). Layers are swapped with ``flax.linen.intercept_methods``; the model code is not
touched. Then every convolution, tdBN and neuron layer is timed alone (forward+backward at
its real input shape) and summed per kind: a direct measure of each part, since an ablation also
changes what XLA does around the removed layers. Timing: after compilation,
``block_until_ready``, median of ``--repeats`` runs.
"""

from __future__ import annotations

import argparse
import functools

import jax
import numpy as np
from flax import linen as nn

import mlf_jax as mj
from experiments.allocator import allocator, reexec_with_jemalloc
from experiments.bench.common import (
    copy_bandwidth,
    matmul_rate,
    positive_int,
    time_compiled,
    write_json,
)
from experiments.bench.train_step import PRESETS, preset_config
from experiments.models import build_model

VARIANTS = {
    "full": (),
    "no neurons": mj.nn.NEURON_LAYERS,
    "convs only": (*mj.nn.NEURON_LAYERS, mj.nn.TdBatchNorm),
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
    config, shape = preset_config(preset)
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


#: The layer kinds timed alone, by the name used in the output.
LAYER_KINDS = {"convs": nn.Conv, "tdBN": mj.nn.TdBatchNorm, "neurons": mj.nn.NEURON_LAYERS}


def layer_calls(model: nn.Module, x: jax.Array) -> list[tuple[str, nn.Module, tuple, dict]]:
    """``(kind, unbound module, input shape, call kwargs)`` of every call of a module of
    :data:`LAYER_KINDS` in one training-mode forward pass of ``model`` on ``x``
    (traced with ``jax.eval_shape``: nothing is computed)."""
    calls = []

    def interceptor(next_fun, args, kwargs, context):
        if context.method_name == "__call__":
            for kind, cls in LAYER_KINDS.items():
                if isinstance(context.module, cls):
                    module = context.module.clone(parent=None, name=None)
                    calls.append((kind, module, tuple(args[0].shape), dict(kwargs)))
        return next_fun(*args, **kwargs)

    with nn.intercept_methods(interceptor):
        jax.eval_shape(functools.partial(model.init, train=True), jax.random.key(0), x)
    return calls


def time_layer(module: nn.Module, shape: tuple, kwargs: dict, repeats: int) -> float:
    """Median seconds of forward+backward (input and parameters) of one layer alone."""
    x = jax.random.uniform(jax.random.key(0), shape, maxval=3.0)
    variables = module.init(jax.random.key(2), x, **kwargs)
    params, state = (
        variables.get("params", {}),
        {k: v for k, v in variables.items() if k != "params"},
    )

    def forward(params, x):
        out = module.apply({"params": params, **state}, x, mutable=list(state), **kwargs)
        return out[0]

    out_shape = jax.eval_shape(forward, params, x).shape
    g = jax.random.normal(jax.random.key(1), out_shape)

    def fwd_bwd(params, x, g):
        return jax.vjp(forward, params, x)[1](g)

    return time_compiled(fwd_bwd, params, x, g, repeats=repeats)[1]


def measure_layers(preset: str, repeats: int, bandwidth: float) -> dict:
    """Forward+backward of every convolution, tdBN and neuron layer of ``preset`` timed
    alone at its real shape, summed per kind.

    A direct measure of each part, beside the ablation (whose differences of whole-step
    times also contain what XLA does differently around the removed layers). Each distinct
    (module, shape) is compiled and timed once and counted as often as it occurs. For the
    neurons, also the memory floor: 16 bytes per element (read x and the output
    cotangent, write the spikes and dx) over the copy bandwidth.
    """
    config, shape = preset_config(preset)
    config.cross_device_bn = False
    model = build_model(config)
    x = mj.train.step.model_input(np.zeros((config.batch_size, *shape), np.float32))
    counts: dict = {}
    for kind, layer, shape_, kwargs in layer_calls(model, x):
        key = (kind, repr(layer), shape_, tuple(sorted(kwargs.items())))
        counts.setdefault(key, [layer, kwargs, 0])[2] += 1
    result = {kind: {"layers": 0, "seconds": 0.0, "elements": 0.0} for kind in LAYER_KINDS}
    for (kind, _, shape_, _), (layer, kwargs, count) in counts.items():
        part = result[kind]
        part["layers"] += count
        part["seconds"] += count * time_layer(layer, shape_, kwargs, repeats)
        part["elements"] += count * float(np.prod(shape_))
    neurons = result["neurons"]
    neurons["memory_floor_seconds"] = 16 * neurons["elements"] / bandwidth
    for kind, part in result.items():
        print(
            f"{preset:<14}{kind + ' alone':<16}{part['seconds']:>8.3f} s  {part['layers']} layers",
            flush=True,
        )
    print(
        f"{preset:<14}neurons: {neurons['elements'] / 1e6:.1f} M elements, memory floor "
        f"{neurons['memory_floor_seconds']:.3f} s "
        f"({neurons['seconds'] / neurons['memory_floor_seconds']:.1f}x)",
        flush=True,
    )
    return result


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


def print_summary(parts: list[dict]) -> None:
    """Seconds (and % of the full step) of each part, by ablation and timed alone."""
    cell = "{:>7.2f} ({:>3.0f}%)"
    print(f"\n{'':<14}{'':>9}{'by ablation':^42}{'timed alone':^56}")
    kinds = list(LAYER_KINDS)
    heads = ("convs only", "+ tdBN", "+ neurons", *kinds, "sum")
    print(f"{'preset':<14}{'step s':>9}" + "".join(f"{h:>14}" for h in heads))
    for p in parts:
        full = p["full_seconds"]
        ablation = [p["convs_seconds"], p["tdbn_seconds"], p["neuron_seconds"]]
        alone = [p["alone"][k]["seconds"] for k in kinds]
        cells = [cell.format(v, 100 * v / full) for v in (*ablation, *alone, sum(alone))]
        print(f"{p['preset']:<14}{full:>9.2f}" + "".join(cells))


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--presets", nargs="+", default=list(PRESETS), choices=list(PRESETS))
    parser.add_argument("--repeats", type=positive_int, default=3)
    parser.add_argument("--out", default="experiments/bench/results/profile.json")
    args = parser.parse_args(argv)
    flop_rate, bandwidth = matmul_rate(), copy_bandwidth()
    print(f"matmul {flop_rate / 1e9:.1f} GFLOP/s, copy bandwidth {bandwidth / 1e9:.1f} GB/s")
    rows, parts = [], []
    for preset in args.presets:
        r = measure(preset, args.repeats, flop_rate, bandwidth)
        rows += r
        parts.append(breakdown(r) | {"alone": measure_layers(preset, args.repeats, bandwidth)})
    print_summary(parts)
    out = {
        "allocator": allocator(),
        "matmul_flops_per_second": flop_rate,
        "copy_bytes_per_second": bandwidth,
        "variants": rows,
        "breakdown": parts,
    }
    write_json(args.out, out)


if __name__ == "__main__":
    reexec_with_jemalloc()
    main()
