"""The cost of the checkpoints' fingerprint: a save and a restore of the CIFAR10 preset's
train state with and without it.

    python -m experiments.bench.fingerprint [--repeats 7]

The state is ``mj.models.cifar10_resnet20()``'s train state (parameters, tdBN statistics,
the SGD momentum of every parameter, step and RNG key), as :func:`mlf_jax.train.state_to_tree`
gives it to :class:`mlf_jax.train.Checkpointer`. Each round saves (then restores) it once with
the fingerprint and once without (the fingerprint replaced by an empty one, its check by
nothing), alternated, in a temporary folder; the first round (compilation) is not counted; the
medians of the others are reported, with the fingerprint alone on the same arrays.
Figures: the benchmarks guide (``docs/guides/benchmarks.md``, section "Checkpoint
fingerprint").
"""

from __future__ import annotations

import argparse
import contextlib
import tempfile
import time
from collections.abc import Iterator
from typing import Any

from experiments.allocator import reexec_with_jemalloc
from experiments.bench.common import positive_int, write_json


@contextlib.contextmanager
def _without_fingerprint() -> Iterator[None]:
    """Saves record an empty fingerprint and restores do not check it."""
    from mlf_jax.train import checkpoint

    saved = checkpoint.fingerprint, checkpoint._check_fingerprint
    checkpoint.fingerprint = lambda tree: []  # type: ignore[assignment]
    checkpoint._check_fingerprint = lambda tree, meta: None  # type: ignore[assignment]
    try:
        yield
    finally:
        checkpoint.fingerprint, checkpoint._check_fingerprint = saved


def cifar10_state() -> dict[str, Any]:
    """The CIFAR10 preset's train state as a checkpoint tree."""
    import jax
    import numpy as np

    import mlf_jax as mj

    model = mj.models.cifar10_resnet20()
    state = mj.train.create_train_state(
        model, mj.train.sgd(0.1), jax.random.key(0), np.zeros((2, 32, 32, 3), np.float32)
    )
    # momentum buffers that are not all zeros, as in a run
    state = state.replace(opt_state=jax.tree.map(lambda x: x + 0.5, state.opt_state))
    return mj.train.state_to_tree(state, jax.random.key(0))


def measure(repeats: int) -> dict[str, Any]:
    import jax
    import numpy as np

    import mlf_jax as mj
    from mlf_jax.train.checkpoint import fingerprint

    tree = cifar10_state()
    nbytes = sum(np.asarray(x).nbytes for x in jax.tree.leaves(tree))
    times: dict[str, list[float]] = {k: [] for k in ("save", "save_plain", "restore")}
    times |= {"restore_plain": [], "fingerprint": []}
    with tempfile.TemporaryDirectory() as tmp:
        ckpt = mj.train.Checkpointer(tmp, max_to_keep=2)
        for i in range(repeats + 1):
            for plain in (False, True):
                with _without_fingerprint() if plain else contextlib.nullcontext():
                    t0 = time.perf_counter()
                    ckpt.save(2 * i + plain, tree, {})
                    t1 = time.perf_counter()
                    ckpt.restore_latest(tree)
                    t2 = time.perf_counter()
                if i:  # the first round compiles
                    suffix = "_plain" if plain else ""
                    times["save" + suffix].append(t1 - t0)
                    times["restore" + suffix].append(t2 - t1)
            t0 = time.perf_counter()
            fingerprint(tree)
            if i:
                times["fingerprint"].append(time.perf_counter() - t0)
        ckpt.close()
    medians = {k: float(np.median(v)) for k, v in times.items()}
    return {
        "state_bytes": int(nbytes),
        "leaves": len(jax.tree.leaves(tree)),
        "repeats": repeats,
        "devices": jax.device_count(),
        "platform": jax.default_backend(),
        "median_seconds": medians,
        "save_overhead": medians["save"] / medians["save_plain"] - 1,
        "restore_overhead": medians["restore"] / medians["restore_plain"] - 1,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=positive_int, default=7)
    parser.add_argument("--out", default="experiments/bench/results/fingerprint.json")
    args = parser.parse_args()
    result = measure(args.repeats)
    m = result["median_seconds"]
    print(
        f"CIFAR10 preset train state: {result['state_bytes'] / 2**20:.1f} MiB in "
        f"{result['leaves']} arrays ({result['platform']}, median of {args.repeats})"
    )
    print(f"{'':12}{'with':>10}{'without':>10}{'overhead':>10}")
    for what in ("save", "restore"):
        overhead = result[f"{what}_overhead"]
        print(f"{what:12}{m[what]:>9.3f}s{m[what + '_plain']:>9.3f}s{overhead:>+10.1%}")
    print(f"{'fingerprint':12}{m['fingerprint']:>9.3f}s")
    write_json(args.out, result)


if __name__ == "__main__":
    reexec_with_jemalloc()
    main()
