"""The quick start's first ``init``: what it costs, and what a user can do about it.

    python -m experiments.bench.init [--rounds 5] [--out experiments/bench/results/init.json]

The README's quick start builds ``mj.models.resnet(8, widths=(8, 16, 32), time_steps=2)``
and calls ``jax.jit(model.init)(jax.random.key(0), zeros((4, 28, 28, 1)))``. Each variant
below runs in a fresh process (JAX caches compilations in-process), the variants in a
rotated order each round; the table is the median over rounds of the first call's
seconds (trace + compile + run; for the jitted variants also split into tracing and
lowering, XLA's compilation, and the run):

- ``jit``: the quick start as written.
- ``eager``: ``model.init(...)`` without ``jax.jit`` (every operation compiled alone).
- ``opt0``: ``jax.jit(model.init, compiler_options={"xla_backend_optimization_level": 0})``.
- ``threefry_unpartitionable``: ``jax_threefry_partitionable=False`` (other numbers).
- ``rbg``: ``jax.random.key(0, impl="rbg")`` (other numbers).
- ``cache_warm``: the quick start with JAX's persistent compilation cache, filled by an
  earlier process (``jax.config.update("jax_compilation_cache_dir", ...)``).
- ``apply``: for scale, ``jax.jit(model.apply)`` of the initialised variables.
- ``normal``: for scale, one ``jax.random.normal(key, (3, 3, 16, 16))``, jitted.

One more process checks the values: each variant's parameters against the quick start's
(identical, or the largest difference in units in the last place).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from experiments.bench.common import positive_int, write_json

__all__ = ["VARIANTS", "measure", "main"]

VARIANTS = (
    "jit",
    "eager",
    "opt0",
    "threefry_unpartitionable",
    "rbg",
    "cache_warm",
    "apply",
    "normal",
)
_OPT0 = {"xla_backend_optimization_level": 0}
_CACHE_ENV = "_MLF_JAX_BENCH_INIT_CACHE"


def _setup(variant: str) -> tuple[Any, Any, Any]:
    """The quick start's model, key and images, with the variant's JAX settings."""
    import jax
    import jax.numpy as jnp

    import mlf_jax as mj

    if variant == "threefry_unpartitionable":
        jax.config.update("jax_threefry_partitionable", False)
    if variant == "cache_warm":
        jax.config.update("jax_compilation_cache_dir", os.environ[_CACHE_ENV])
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)
    model = mj.models.resnet(8, widths=(8, 16, 32), time_steps=2)
    key = jax.random.key(0, impl="rbg") if variant == "rbg" else jax.random.key(0)
    return model, key, jnp.zeros((4, 28, 28, 1))


def _timed(fn: Any, *args: Any) -> tuple[float, Any]:
    import jax

    t0 = time.perf_counter()
    out = jax.block_until_ready(fn(*args))
    return time.perf_counter() - t0, out


def measure(variant: str) -> dict[str, Any]:
    """Seconds of ``variant``'s first call in this (fresh) process."""
    import jax

    model, key, x = _setup(variant)
    if variant == "eager":
        seconds, _ = _timed(model.init, key, x)
        return {"variant": variant, "first_call_s": seconds}
    if variant == "apply":
        variables = model.init(key, x)
        fn, args = jax.jit(model.apply), (variables, x)
    elif variant == "normal":
        fn, args = jax.jit(lambda k: jax.random.normal(k, (3, 3, 16, 16))), (key,)
    elif variant == "opt0":
        fn, args = jax.jit(model.init, compiler_options=_OPT0), (key, x)
    else:
        fn, args = jax.jit(model.init), (key, x)
    t0 = time.perf_counter()
    lowered = fn.lower(*args)
    t1 = time.perf_counter()
    compiled = lowered.compile()
    t2 = time.perf_counter()
    run, _ = _timed(compiled, *args)
    return {
        "variant": variant,
        "first_call_s": t2 - t0 + run,
        "trace_lower_s": t1 - t0,
        "compile_s": t2 - t1,
        "run_s": run,
    }


def _flat(variables: Any) -> dict[str, Any]:
    import jax
    import numpy as np

    return {jax.tree_util.keystr(p): np.asarray(v) for p, v in jax.tree.leaves_with_path(variables)}


def check() -> dict[str, Any]:
    """Each variant's parameters against the quick start's: identical, or how far."""
    import jax
    import numpy as np

    model, key, x = _setup("jit")
    ref = _flat(jax.jit(model.init)(key, x))
    out: dict[str, Any] = {}
    for name, fn in (
        ("eager", model.init),
        ("opt0", jax.jit(model.init, compiler_options=_OPT0)),
    ):
        got = _flat(fn(key, x))
        ulps = max(
            int(np.max(np.abs(a.view(np.int32).astype(np.int64) - b.view(np.int32))))
            if a.dtype == np.float32
            else int(not np.array_equal(a, b))
            for a, b in ((ref[k], got[k]) for k in ref)
        )
        out[name] = {"identical": ulps == 0, "max_ulps": ulps}
    rbg = _flat(jax.jit(model.init)(jax.random.key(0, impl="rbg"), x))
    out["rbg"] = {"identical": all(np.array_equal(ref[k], rbg[k]) for k in ref)}
    return out


def _child(*args: str, env: dict[str, str] | None = None) -> dict[str, Any]:
    cmd = [sys.executable, "-m", "experiments.bench.init", *args]
    done = subprocess.run(cmd, capture_output=True, text=True, check=True, env=env)
    return json.loads(done.stdout.strip().splitlines()[-1])


def _median(values: list[float]) -> float:
    import statistics

    return float(statistics.median(values))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=positive_int, default=5)
    parser.add_argument("--variants", nargs="+", choices=VARIANTS, default=list(VARIANTS))
    parser.add_argument("--out", default="experiments/bench/results/init.json")
    parser.add_argument("--variant", choices=VARIANTS, help=argparse.SUPPRESS)  # a child
    parser.add_argument("--check", action="store_true", help=argparse.SUPPRESS)  # a child
    args = parser.parse_args(argv)
    if args.variant:
        print(json.dumps(measure(args.variant)))
        return
    if args.check:
        print(json.dumps(check()))
        return

    import jax

    from experiments.allocator import allocator

    runs: dict[str, list[dict[str, Any]]] = {v: [] for v in args.variants}
    with tempfile.TemporaryDirectory() as cache:
        env = {**os.environ, _CACHE_ENV: cache}
        if "cache_warm" in runs:  # an earlier process fills the cache
            _child("--variant", "cache_warm", env=env)
        for r in range(args.rounds):
            shift = r % len(args.variants)
            for variant in args.variants[shift:] + args.variants[:shift]:
                runs[variant].append(_child("--variant", variant, env=env))
                print(f"round {r + 1}: {variant} {runs[variant][-1]['first_call_s']:.2f} s")
    keys = ("first_call_s", "trace_lower_s", "compile_s", "run_s")
    rows = [
        {
            "variant": v,
            **{f"median_{k}": _median([x[k] for x in rs]) for k in keys if k in rs[0]},
            "first_call_s_of_each_round": [round(x["first_call_s"], 3) for x in rs],
        }
        for v, rs in runs.items()
    ]
    print(f"\n{'variant':<26}{'first call':>12}{'trace+lower':>13}{'compile':>9}{'run':>8}")
    for row in rows:
        cells = [row.get(f"median_{k}") for k in keys]
        text = ["-" if c is None else f"{c:.2f} s" for c in cells]
        widths = (12, 13, 9, 8)
        print(
            f"{row['variant']:<26}"
            + "".join(f"{t:>{w}}" for t, w in zip(text, widths, strict=True))
        )
    values = _child("--check")
    print(f"values against the quick start's: {values}")
    write_json(
        Path(args.out),
        {
            "what": "first call of the quick start's init (resnet(8, widths=(8, 16, 32), "
            "time_steps=2) on zeros (4, 28, 28, 1)), each variant in a fresh process, "
            "median over rounds",
            "jax": jax.__version__,
            "cpu_count": os.cpu_count(),
            "allocator": allocator(),
            "rounds": args.rounds,
            "rows": rows,
            "values": values,
        },
    )


if __name__ == "__main__":
    from experiments.allocator import reexec_with_jemalloc

    reexec_with_jemalloc()
    main()
