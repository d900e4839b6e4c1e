"""Peak memory of a train step for very deep nets, with and without per-block remat.

    python -m experiments.bench.memory [--depth 68] [--time-steps 40] [--batch 28]

The memory XLA plans for one compiled train step (``memory_analysis()`` of the
compiled executable: arguments, outputs and temporaries), for the Gesture config's net
(widths 16/32/64, 32x32 input, built by ``experiments.models.build_model``) at other
depths and T. No step is run: the figure is the compiler's plan, which
is what decides whether a configuration fits on a device.
"""

from __future__ import annotations

import argparse
import time
from typing import Any

from experiments.allocator import reexec_with_jemalloc
from experiments.bench.common import positive_int, write_json


def model_of(depth: int, time_steps: int, remat: bool) -> Any:
    """The Gesture config's net (``experiments/configs/gesture.py``) at ``depth`` and
    ``time_steps``, with or without per-block remat, on one device."""
    from experiments.configs import gesture
    from experiments.models import build_model

    config = gesture.get_config()
    config.model.depth, config.model.time_steps, config.model.remat = depth, time_steps, remat
    config.cross_device_bn = False  # one compiled program, no device axis
    return build_model(config)


def plan(depth: int, time_steps: int, batch: int, remat: bool) -> dict:
    import jax
    import numpy as np

    import mlf_jax as mj

    model = model_of(depth, time_steps, remat)
    x = np.zeros((time_steps, batch, 32, 32, 2), np.float32)
    state = mj.train.create_train_state(model, mj.train.sgd(0.1), jax.random.key(0), x[:, :2])
    batch_ = {"image": np.swapaxes(x, 0, 1), "label": np.zeros(batch, np.int32)}
    t0 = time.perf_counter()
    compiled = jax.jit(mj.train.train_step).lower(state, batch_).compile()
    seconds = time.perf_counter() - t0
    m = compiled.memory_analysis()
    return {
        "depth": depth,
        "time_steps": time_steps,
        "batch": batch,
        "remat": remat,
        "temp_bytes": m.temp_size_in_bytes,
        "argument_bytes": m.argument_size_in_bytes,
        "output_bytes": m.output_size_in_bytes,
        "peak_bytes": m.temp_size_in_bytes + m.argument_size_in_bytes + m.output_size_in_bytes,
        "compile_seconds": seconds,
    }


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--depth", type=positive_int, default=68)
    parser.add_argument("--time-steps", type=positive_int, default=40)
    parser.add_argument("--batch", type=positive_int, default=28)
    parser.add_argument("--out", default="experiments/bench/results/memory.json")
    args = parser.parse_args(argv)
    rows = [plan(args.depth, args.time_steps, args.batch, r) for r in (False, True)]
    header = (("depth", 6), ("T", 4), ("batch", 6), ("remat", 7), ("peak MiB", 10))
    print("".join(f"{h:>{w}}" for h, w in header) + f"{'temp MiB':>10}{'compile s':>11}")
    for r in rows:
        print(
            f"{r['depth']:>6}{r['time_steps']:>4}{r['batch']:>6}{r['remat']!s:>7}"
            f"{r['peak_bytes'] / 2**20:>10.0f}{r['temp_bytes'] / 2**20:>10.0f}"
            f"{r['compile_seconds']:>11.1f}"
        )
    print(f"remat / plain peak: {rows[1]['peak_bytes'] / rows[0]['peak_bytes']:.3f}")
    write_json(args.out, rows)


if __name__ == "__main__":
    reexec_with_jemalloc()
    main()
