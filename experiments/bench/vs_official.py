"""Our train step against the authors' PyTorch code, side by side on this machine.

    python -m experiments.bench.vs_official [--official ../shared/official]
        [--presets cifar10 gesture cifar10dvs] [--rounds 4] [--steps 2]
        [--out experiments/bench/results/vs_official.json] [--readme docs/results/speed.md]

For each paper preset and round, the authors' DS-ResNet (their ``parallel_nets`` code,
run in a separate virtualenv with the CPU build of PyTorch, which is created on first use
and is never a dependency of this project) and ours (``experiments.bench.train_step.prepare``:
the data-parallel step of ``experiments.train``) each run in a fresh process, one after the
other, the order alternating from round to round: their warm-up step (our compilation,
from the persistent cache after the first round), then ``--steps`` timed steps. Only one
side is alive at a time, so neither competes with the other for cores or memory (two
CIFAR10 steps side by side filled the 24 GB development machine). Same global batch, T,
optimiser (SGD, momentum 0.9, weight decay 1e-4) and thread count (PyTorch's intra-op
threads = the cores; ours: one CPU device per core, see ``experiments.cpu_devices``).
Reported: the median of the rounds for each side, their ratio, and every round's ratio.
Without the authors' code it says so and exits 0.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

from experiments.bench._workers import ROOT, Worker, venv_python
from experiments.bench.common import positive_int

HERE = Path(__file__).resolve().parent
DEFAULT_OFFICIAL = ROOT.parent / "shared" / "official"
DEFAULT_VENV = ROOT / ".bench-venvs" / "official"
#: The PyTorch the authors' side runs with (CPU build).
TORCH = "torch==2.13.0"
PRESETS = ("cifar10", "gesture", "cifar10dvs")
LABELS = {
    "cifar10": "CIFAR10 DS-ResNet-20",
    "gesture": "DVS128 Gesture DS-ResNet-20",
    "cifar10dvs": "CIFAR10-DVS DS-ResNet-14",
}


def _ours_worker() -> None:
    """The project side of the protocol of ``_official_worker`` (see its docstring)."""
    step = None
    for line in sys.stdin:
        command = json.loads(line)
        if command["cmd"] == "quit":
            break
        if command["cmd"] == "setup":
            step = None
            step, info = _prepare_ours(command["preset"])
            answer = {
                "first": step(),
                "jax": info["jax"],
                "devices": info["devices"],
                "time_steps": info["config"].model.time_steps,
                "batch": info["config"].batch_size,
            }
        else:
            answer = {"seconds": step()}
        print(json.dumps(answer), flush=True)


def _prepare_ours(preset: str):
    """``train_step.prepare(preset)`` on one CPU device per core (as many as divide the
    preset's batch; set before JAX's backend starts), with the persistent compilation
    cache, so that the fresh processes of later rounds load the compiled step."""
    from experiments import cpu_devices
    from experiments.bench.train_step import prepare, preset_config
    from experiments.configs import base

    cpu_devices.use_every_core([preset_config(preset)[0].batch_size])
    import jax

    from experiments import trainer

    trainer.enable_compilation_cache(base.get_config().compilation_cache_dir)
    step, info = prepare(preset)
    return step, {**info, "jax": jax.__version__, "devices": str(jax.devices())}


def compare(preset: str, start: dict, rounds: int, steps: int, threads: int, device: str) -> dict:
    """Times ``preset`` on both sides: per round, each side in a fresh process (the order
    alternating), its compilation or warm-up step, then ``steps`` timed steps."""
    times = {"official": [], "ours": []}
    setups = {}
    for r in range(rounds):
        for side in ("official", "ours") if r % 2 == 0 else ("ours", "official"):
            worker = start[side]()
            try:
                setups[side] = worker.ask(
                    cmd="setup", preset=preset, threads=threads, device=device
                )
                times[side].append(
                    statistics.median([worker.ask(cmd="step")["seconds"] for _ in range(steps)])
                )
            finally:
                worker.close()
        theirs, mine = times["official"], times["ours"]
        print(
            f"  {preset} round {r + 1}/{rounds}: official {theirs[-1]:.3f} s, "
            f"ours {mine[-1]:.3f} s ({theirs[-1] / mine[-1]:.2f}x)",
            flush=True,
        )
    theirs_setup, ours_setup = setups["official"], setups["ours"]
    if (theirs_setup["batch"], theirs_setup["time_steps"]) != (
        ours_setup["batch"],
        ours_setup["time_steps"],
    ):
        sys.exit(f"error: {preset}: the two sides disagree on batch/T: {theirs_setup} {ours_setup}")
    theirs, mine = times["official"], times["ours"]
    return {
        "preset": preset,
        "batch_size": ours_setup["batch"],
        "time_steps": ours_setup["time_steps"],
        "official_step_seconds": statistics.median(theirs),
        "ours_step_seconds": statistics.median(mine),
        "official_over_ours": statistics.median(theirs) / statistics.median(mine),
        "round_ratios": [a / b for a, b in zip(theirs, mine, strict=True)],
        "official_times": theirs,
        "ours_times": mine,
        "official_first_step_seconds": theirs_setup["first"],
        "ours_first_step_seconds": ours_setup["first"],
        "torch": theirs_setup["torch"],
        "torch_threads": theirs_setup["threads"],
        "jax": ours_setup["jax"],
        "ours_devices": ours_setup["devices"],
        "official_device": device,
    }


def table(rows: list[dict]) -> str:
    """The README's markdown table of ``rows``."""
    lines = [
        "| preset | batch | T | official s/step | ours s/step | official / ours (rounds) |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        spread = f"{min(r['round_ratios']):.2f}-{max(r['round_ratios']):.2f}"
        lines.append(
            f"| {LABELS[r['preset']]} | {r['batch_size']} | {r['time_steps']} "
            f"| {r['official_step_seconds']:.2f} | {r['ours_step_seconds']:.2f} "
            f"| **{r['official_over_ours']:.2f}x** ({spread}) |"
        )
    return "\n".join(lines)


BEGIN, END = "<!-- vs_official:begin -->", "<!-- vs_official:end -->"


def update_readme(path: Path, text: str) -> None:
    """Replaces the block between the ``vs_official`` markers of ``path`` by ``text``."""
    content = path.read_text()
    if BEGIN not in content or END not in content:
        sys.exit(f"error: {path} has no {BEGIN} ... {END} block to update")
    head, rest = content.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    path.write_text(f"{head}{BEGIN}\n{text}\n{END}{tail}")
    print(f"updated {path}")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--official", type=Path, default=DEFAULT_OFFICIAL,
                        help="folder of the authors' code (holding parallel_nets/)")  # fmt: skip
    parser.add_argument("--torch_venv", type=Path, default=DEFAULT_VENV)
    parser.add_argument("--torch_python", default=None,
                        help="an interpreter with torch, instead of --torch_venv")  # fmt: skip
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu",
                        help="where the authors' net runs (ours: JAX's default)")  # fmt: skip
    parser.add_argument("--presets", nargs="+", default=list(PRESETS), choices=PRESETS)
    parser.add_argument("--rounds", type=positive_int, default=4)
    parser.add_argument("--steps", type=positive_int, default=2,
                        help="timed steps per process (after its first)")  # fmt: skip
    parser.add_argument("--out", default="experiments/bench/results/vs_official.json")
    parser.add_argument("--readme", type=Path, default=Path("docs/results/speed.md"),
                        help="also write the table into this page's vs_official block")  # fmt: skip
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        return _ours_worker()
    if not (args.official / "parallel_nets").is_dir():
        print(f"skipped: the authors' code is not at {args.official} (no parallel_nets/ there)")
        return
    from experiments.allocator import allocator
    from experiments.bench.common import write_json
    from experiments.cpu_devices import core_count

    python = args.torch_python or venv_python(args.torch_venv, [TORCH, "numpy"], "import torch")
    threads = core_count()
    # PyTorch under the system allocator, as its users run it (jemalloc with our
    # settings made the authors' step slower here); ours under experiments.allocator's.
    torch_env = {k: v for k, v in os.environ.items() if k not in ("LD_PRELOAD", "MALLOC_CONF")}
    start = {
        "official": lambda: Worker(
            "official",
            # -P: not this folder on sys.path (its profile.py would shadow the standard one)
            [str(python), "-P", str(HERE / "_official_worker.py"), str(args.official)],
            env=torch_env,
        ),
        "ours": lambda: Worker(
            "ours", [sys.executable, "-m", "experiments.bench.vs_official", "--worker"]
        ),
    }
    rows = []
    for preset in args.presets:
        print(f"{preset}:", flush=True)
        rows.append(compare(preset, start, args.rounds, args.steps, threads, args.device))
    text = table(rows)
    print(text)
    write_json(
        args.out,
        {
            "machine": {
                "cores": threads,
                "processor": platform.processor() or platform.machine(),
                "allocator_of_this_process": allocator(),
                "date": time.strftime("%Y-%m-%d"),
                "MLF_JAX_CPU_DEVICES": os.environ.get("MLF_JAX_CPU_DEVICES", "all"),
            },
            "rows": rows,
        },
    )
    if args.readme:
        update_readme(args.readme, text)


if __name__ == "__main__":
    from experiments.allocator import reexec_with_jemalloc

    reexec_with_jemalloc()
    main()
