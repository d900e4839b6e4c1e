"""The convolution implementations (``conv_impl``) in each preset's train step.

    python -m experiments.bench.conv [--presets cifar10 cifar10dvs fashion_mnist]
        [--impls xla patch_grad] [--rounds 4] [--out experiments/bench/results/conv.json]

``xla``: XLA's convolutions and their autodiff; ``patch_grad`` (``'auto'`` on CPU): the
same with the kernel gradient as one matmul over patches; ``im2col``: everything as
matmuls over patches (``mlf_jax.nn.conv``).

One process, one device, the paper's batch size. Both train steps (``jax.jit`` of
``mlf_jax.train.train_step``, same parameters and batch) are compiled first, then timed
in alternation, ``--rounds`` times each, so that both see the same load on a shared,
noisy machine; reported: the median step time of each and their ratio, and the memory
XLA plans for each step (arguments, outputs and temporaries of the compiled program).
Gesture is left out of the default presets: its im2col step needs more than twice the
memory of XLA's convolutions, about as much as a 24 GiB machine has (figures: the
benchmarks guide, ``docs/guides/benchmarks.md``, section "Convolutions").
"""

from __future__ import annotations

import argparse
import time

import jax
import numpy as np

import mlf_jax as mj
from experiments.allocator import allocator, reexec_with_jemalloc
from experiments.bench.common import positive_int, write_json
from experiments.bench.train_step import PRESETS, preset_config
from experiments.models import build_model
from mlf_jax.nn.conv import CONV_IMPLS


def measure(preset: str, impls: list[str], rounds: int) -> dict:
    """Median step seconds and planned memory of ``preset``'s train step per conv impl."""
    config, shape = preset_config(preset)
    config.cross_device_bn = False
    rng = np.random.default_rng(0)
    image = rng.integers(0, 3, (config.batch_size, *shape)).astype(np.float32)
    batch = {"image": image, "label": rng.integers(0, 10, config.batch_size).astype(np.int32)}
    tx = mj.train.sgd(0.1, config.momentum, config.weight_decay)
    steps, states, memory = {}, {}, {}
    for impl in impls:
        config.model.conv_impl = impl
        model = build_model(config)
        state = mj.train.create_train_state(
            model, tx, jax.random.key(0), mj.train.step.model_input(image[:2])
        )
        compiled = jax.jit(mj.train.train_step).lower(state, batch).compile()
        m = compiled.memory_analysis()
        memory[impl] = m.temp_size_in_bytes + m.argument_size_in_bytes + m.output_size_in_bytes
        jax.block_until_ready(compiled(state, batch))  # warm-up
        steps[impl], states[impl] = compiled, state
    times: dict[str, list[float]] = {impl: [] for impl in impls}
    for _ in range(rounds):
        for impl in impls:
            t0 = time.perf_counter()
            jax.block_until_ready(steps[impl](states[impl], batch))
            times[impl].append(time.perf_counter() - t0)
    median = {impl: float(np.median(t)) for impl, t in times.items()}
    row = {
        "preset": preset,
        "batch_size": config.batch_size,
        "time_steps": config.model.time_steps,
        "step_seconds": median,
        "step_times": times,
        "planned_bytes": memory,
    }
    cells = "".join(f"{median[i]:>10.3f} s {memory[i] / 2**30:>6.2f} GiB" for i in impls)
    print(f"{preset:<14}{cells}{median[impls[0]] / median[impls[-1]]:>9.2f}x", flush=True)
    return row


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--presets", nargs="+", default=["cifar10", "cifar10dvs", "fashion_mnist"],
        choices=list(PRESETS),
    )  # fmt: skip
    parser.add_argument("--impls", nargs="+", default=["xla", "patch_grad"], choices=CONV_IMPLS)
    parser.add_argument("--rounds", type=positive_int, default=4)
    parser.add_argument("--out", default="experiments/bench/results/conv.json")
    args = parser.parse_args(argv)
    head = "".join(f"{i + ' step':>12}{'memory':>11}" for i in args.impls)
    print(f"{'preset':<14}{head}{'ratio':>10}")
    rows = [measure(p, args.impls, args.rounds) for p in args.presets]
    out = {"allocator": allocator(), "impls": args.impls, "rows": rows}
    write_json(args.out, out)


if __name__ == "__main__":
    reexec_with_jemalloc()
    main()
