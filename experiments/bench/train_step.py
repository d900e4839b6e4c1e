"""Train-step throughput of the paper presets (and the Fashion-MNIST job) on this machine.

    python -m experiments.bench.train_step [--devices 1 2] [--presets cifar10 gesture ...]
        [--repeats 3] [--out experiments/bench/results/train_step.json]

Each device count runs in its own process (``--xla_force_host_platform_device_count``
must be set before JAX starts). Per preset: compile time, then the median of
``--repeats`` timed steps (``block_until_ready``) at the paper's global batch size,
data parallel with ``shard_map`` and cross-device tdBN, as ``experiments.train`` runs.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import subprocess
import sys
import time

from experiments.allocator import allocator, reexec_with_jemalloc
from experiments.bench.common import matmul_rate, positive_int, write_json
from mlf_jax.nn.conv import CONV_IMPLS

PRESETS = {
    # name: (config module, input shape of one example, batch-major)
    "cifar10": ("cifar10", (32, 32, 3)),
    "gesture": ("gesture", (40, 32, 32, 2)),
    "cifar10dvs": ("cifar10dvs", (10, 42, 42, 2)),
    "fashion_mnist": ("fashion_mnist", (28, 28, 1)),
}


def preset_config(preset: str):
    """``(config, shape of one example)`` of ``preset`` (``experiments/configs/<module>.py``)."""
    from experiments.config_check import validate

    module, shape = PRESETS[preset]
    config = importlib.import_module(f"experiments.configs.{module}").get_config()
    validate(config)
    return config, shape


def prepare(preset: str, conv_impl: str | None = None):
    """The data-parallel train step of ``preset`` on all visible devices, ready to time.

    Returns ``(step, info)``: ``step()`` runs one SGD step at the paper's global batch
    (random inputs) and returns its wall seconds after ``block_until_ready``; the first
    call includes compilation. ``info`` holds the preset's settings, the model and the
    single-program state for a FLOP count.
    """
    import jax
    import numpy as np

    import mlf_jax as mj
    from experiments.models import build_model

    config, shape = preset_config(preset)
    if conv_impl is not None:
        config.model.conv_impl = conv_impl
    model = build_model(config)
    batch_size = config.batch_size
    rng = np.random.default_rng(0)
    image = rng.integers(0, 3, (batch_size, *shape)).astype(np.float32)
    batch = {"image": image, "label": rng.integers(0, 10, batch_size).astype(np.int32)}
    tx = mj.train.sgd(0.1, config.momentum, config.weight_decay)
    state = mj.train.create_train_state(
        model, tx, jax.random.key(0), mj.train.step.model_input(image[:2])
    )
    dp = mj.train.DataParallel(config.parallel)
    box = [dp.put_state(state)]

    def step() -> float:
        t0 = time.perf_counter()
        box[0], metrics = dp.train_step(box[0], batch)
        jax.block_until_ready((box[0], metrics))
        return time.perf_counter() - t0

    info = {"config": config, "model": model, "state": state, "batch": batch}
    return step, info


def measure(preset: str, repeats: int, conv_impl: str | None = None) -> dict:
    """Times the data-parallel train step of ``preset`` on all visible devices."""
    import jax
    import numpy as np

    import mlf_jax as mj

    step, info = prepare(preset, conv_impl)
    config, model, state, batch = info["config"], info["model"], info["state"], info["batch"]
    batch_size = config.batch_size
    first = step()
    times = [step() for _ in range(repeats)]
    seconds = float(np.median(times))
    # FLOPs of the same step as one program (XLA's count: convolutions, dense and
    # elementwise work, forward and backward) and this machine's matmul rate.
    local = state.replace(apply_fn=model.clone(axis_name=None).apply)
    single = jax.jit(mj.train.train_step).lower(local, batch)
    flops = float(single.compile().cost_analysis()["flops"])
    rate = matmul_rate()
    return {
        "preset": preset,
        "devices": jax.device_count(),
        "allocator": allocator(),
        "conv_impl": config.model.conv_impl,
        "batch_size": batch_size,
        "time_steps": config.model.time_steps,
        "first_step_seconds": first,
        "step_seconds": seconds,
        "images_per_second": batch_size / seconds,
        "step_times": times,
        "flops": flops,
        "matmul_flops_per_second": rate,
        "flop_floor_seconds": flops / rate,
        "step_over_flop_floor": seconds / (flops / rate),
    }


def _child(args) -> None:
    results = [measure(p, args.repeats, args.conv_impl) for p in args.presets]
    print("RESULT " + json.dumps(results), flush=True)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--devices", type=positive_int, nargs="+", default=[1, 2])
    parser.add_argument("--presets", nargs="+", default=list(PRESETS), choices=list(PRESETS))
    parser.add_argument("--repeats", type=positive_int, default=3)
    parser.add_argument("--out", default="experiments/bench/results/train_step.json")
    parser.add_argument("--conv_impl", choices=CONV_IMPLS, default=None)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        return _child(args)
    rows = []
    for n in args.devices:
        env = {**os.environ, "XLA_FLAGS": f"--xla_force_host_platform_device_count={n}"}
        cmd = [sys.executable, "-m", "experiments.bench.train_step", "--child",
               "--repeats", str(args.repeats), "--presets", *args.presets]  # fmt: skip
        if args.conv_impl:
            cmd += ["--conv_impl", args.conv_impl]
        out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
        line = next((x for x in out.stdout.splitlines() if x.startswith("RESULT ")), None)
        if line is None:
            sys.exit(f"benchmark with {n} device(s) failed:\n{out.stderr[-3000:]}")
        rows += json.loads(line[len("RESULT ") :])
    header = (
        "preset",
        "devices",
        "batch",
        "T",
        "compile+1st s",
        "step s",
        "img/s",
        "GFLOP",
        "floor s",
        "ratio",
    )
    widths = (14, 8, 7, 4, 15, 9, 9, 9, 9, 7)
    print(
        f"{header[0]:<14}"
        + "".join(f"{h:>{w}}" for h, w in zip(header[1:], widths[1:], strict=True))
    )
    for r in rows:
        print(
            f"{r['preset']:<14}{r['devices']:>8}{r['batch_size']:>7}{r['time_steps']:>4}"
            f"{r['first_step_seconds']:>15.1f}{r['step_seconds']:>9.3f}{r['images_per_second']:>9.1f}"
            f"{r['flops'] / 1e9:>9.0f}{r['flop_floor_seconds']:>9.3f}"
            f"{r['step_over_flop_floor']:>7.1f}"
        )
    write_json(args.out, rows)


if __name__ == "__main__":
    reexec_with_jemalloc()
    main()
