"""Our LIF and MLF layers against the spiking-network libraries people use today.

    python -m experiments.bench.peers [--sizes 512x100 512x500 4096x500] [--rounds 5]
        [--contenders mj.lif mj.mlf spyx spikingjelly snntorch norse]
        [--out experiments/bench/results/peers.json]

The Open Neuromorphic benchmark's task: a dense ``N x N`` layer applied to all T
steps at once, then a layer of spiking neurons over time, batch 16, forward and
backward of the sum of the spikes. Each peer runs in its own virtualenv under
``.bench-venvs/`` (created on first use with the versions in ``PEERS``; none is a
dependency of this project; the PyTorch ones share the CPU build of torch), each
contender in its own long-lived process. Per size, every contender compiles or warms
up once; then in each round each contender times ``--repeats`` calls in turn, the
order rotating from round to round. Reported: the median call per contender and
size, with each library's neuron model (reset, surrogate) from
``_peer_worker.MODELS``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

from experiments.bench._peer_worker import MODELS
from experiments.bench._workers import ROOT, Worker, venv_python
from experiments.bench.common import positive_int

HERE = ROOT / "experiments" / "bench"
VENVS = ROOT / ".bench-venvs"
TORCH = "torch==2.13.0"
#: peer -> (requirements, then requirements installed without their dependencies;
#: an import that must work). SpikingJelly and norse ask for torchvision (and
#: torchaudio), which their neuron layers do not use and whose PyPI builds do not
#: load beside the CPU torch; they are left out.
PEERS = {
    "spyx": (["spyx==1.0.0", "jax==0.10.2", "jaxlib==0.10.2"], [], "import spyx.nn"),
    "snntorch": ([TORCH, "snntorch==1.0.0", "numpy"], [], "import snntorch"),
    "spikingjelly": (
        [TORCH, "numpy", "scipy", "packaging", "loguru", "tqdm", "matplotlib", "h5py"],
        ["spikingjelly==2.0.0"],
        "from spikingjelly.activation_based import neuron, functional",
    ),
    "norse": ([TORCH, "numpy", "nir", "nirtorch"], ["norse==1.1.0"], "import norse.torch"),
}
OURS = ("mj.lif", "mj.mlf")


def peer_python(peer: str):
    """The interpreter of ``peer``'s virtualenv (created on first use)."""
    requirements, no_deps, probe = PEERS[peer]
    python = venv_python(VENVS / peer, requirements, probe, no_deps=no_deps)
    return python


def parse_size(text: str) -> tuple[int, int]:
    """``'512x100'`` -> ``(512, 100)`` (neurons, time steps)."""
    try:
        n, t = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected NxT such as 512x100, got {text!r}") from None
    if n < 1 or t < 1:
        raise argparse.ArgumentTypeError(f"N and T must be >= 1, got {text!r}")
    return n, t


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--sizes", nargs="+", type=parse_size, default=[(512, 100), (512, 500), (4096, 500)]
    )
    parser.add_argument("--contenders", nargs="+", default=list(MODELS), choices=list(MODELS))
    parser.add_argument("--batch", type=positive_int, default=16)
    parser.add_argument("--rounds", type=positive_int, default=5)
    parser.add_argument("--repeats", type=positive_int, default=3)
    parser.add_argument("--out", default="experiments/bench/results/peers.json")
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu",
                        help="where the PyTorch peers run (JAX: its default backend)")  # fmt: skip
    parser.add_argument("--peer_python", default=None,
                        help="one interpreter with every peer, not the virtualenvs")  # fmt: skip
    args = parser.parse_args(argv)
    from experiments.allocator import allocator
    from experiments.bench.common import write_json
    from experiments.cpu_devices import core_count

    threads = core_count()
    # The peers under the system allocator, as their users run them.
    plain_env = {k: v for k, v in os.environ.items() if k not in ("LD_PRELOAD", "MALLOC_CONF")}
    workers = {}
    for c in args.contenders:
        if c in OURS:
            python, env = sys.executable, {**os.environ, "MLF_JAX_CPU_DEVICES": "1"}
        else:
            python, env = args.peer_python or peer_python(c), plain_env
        workers[c] = Worker(c, [str(python), "-P", str(HERE / "_peer_worker.py"), c], env=env)
    rows = []
    try:
        for n, t in args.sizes:
            setup = {
                c: w.ask(
                    cmd="setup", n=n, t=t, batch=args.batch, threads=threads, device=args.device
                )
                for c, w in workers.items()
            }
            times = {c: [] for c in workers}
            order = list(workers)
            for r in range(args.rounds):
                for c in order[r % len(order) :] + order[: r % len(order)]:
                    seconds = workers[c].ask(cmd="time", repeats=args.repeats)["seconds"]
                    times[c].append(statistics.median(seconds))
                print(
                    f"{n}x{t} round {r + 1}/{args.rounds}: "
                    + ", ".join(f"{c} {1e3 * times[c][-1]:.1f} ms" for c in order),
                    flush=True,
                )
            for c in order:
                rows.append(
                    {
                        "contender": c,
                        "n": n,
                        "t": t,
                        "batch": args.batch,
                        "median_seconds": statistics.median(times[c]),
                        "round_seconds": times[c],
                        "first_call_seconds": setup[c]["first"],
                        "versions": {k: v for k, v in setup[c].items() if k != "first"},
                    }
                )
    finally:
        for w in workers.values():
            w.close()
    text = table(rows, args.contenders)
    print(text)
    write_json(
        args.out,
        {
            "machine": {
                "cores": threads,
                "allocator_of_ours": allocator(),
                "device": args.device,
                "date": time.strftime("%Y-%m-%d"),
            },
            "models": {c: MODELS[c] for c in args.contenders},
            "rows": rows,
        },
    )


def table(rows: list[dict], contenders: list[str]) -> str:
    """Markdown: one row per size, median milliseconds per contender, fastest in bold."""
    sizes = sorted({(r["n"], r["t"]) for r in rows}, key=lambda s: (s[1], s[0]))
    lines = ["| N x T | " + " | ".join(contenders) + " |", "|---" * (len(contenders) + 1) + "|"]
    for n, t in sizes:
        ms = {r["contender"]: 1e3 * r["median_seconds"] for r in rows if (r["n"], r["t"]) == (n, t)}
        best = min(ms.values())
        cells = [f"**{ms[c]:.1f}**" if ms[c] == best else f"{ms[c]:.1f}" for c in contenders]
        lines.append(f"| {n} x {t} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    from experiments.allocator import reexec_with_jemalloc

    reexec_with_jemalloc()
    main()
