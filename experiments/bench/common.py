"""Timing helpers shared by the benchmarks: medians after compilation, machine rates."""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["time_compiled", "copy_bandwidth", "matmul_rate", "positive_int", "write_json"]


def time_compiled(fn: Callable, *args, repeats: int = 5) -> tuple[float, float]:
    """``(compile_seconds, median_run_seconds)`` of ``jax.jit(fn)(*args)``."""
    t0 = time.perf_counter()
    compiled = jax.jit(fn).lower(*args).compile()
    compile_s = time.perf_counter() - t0
    jax.block_until_ready(compiled(*args))  # warm-up
    runs = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(compiled(*args))
        runs.append(time.perf_counter() - t0)
    return compile_s, float(np.median(runs))


def copy_bandwidth(n: int = 2**25, repeats: int = 7) -> float:
    """Bytes per second of an in-place ``x += 1`` on ``n`` float32 (a read and a write each).

    The buffer is donated, so no output is allocated: with a fresh 128 MiB output per call
    this would measure page faults, not the memory system (figures: the benchmarks guide,
    ``docs/guides/benchmarks.md``, section "Allocator").
    """
    step = jax.jit(lambda x: x + 1.0, donate_argnums=0)
    x = jax.block_until_ready(step(jnp.ones((n,), jnp.float32)))
    runs = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        x = jax.block_until_ready(step(x))
        runs.append(time.perf_counter() - t0)
    return 2 * 4 * n / float(np.median(runs))


def matmul_rate(n: int = 2048, repeats: int = 5) -> float:
    """FLOP per second of an ``n x n`` float32 matrix product (``2 n^3`` FLOPs)."""
    a = jnp.ones((n, n), jnp.float32)
    _, seconds = time_compiled(lambda a, b: a @ b, a, a, repeats=repeats)
    return 2 * n**3 / seconds


def write_json(path: str | Path, obj) -> None:
    """Writes ``obj`` as indented JSON to ``path`` (creating its folder) and says so."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj, indent=2) + "\n")
    print(f"wrote {path}")


def positive_int(text: str) -> int:
    """``argparse`` type of the benchmarks' counts and sizes: an integer >= 1 (argparse
    names the flag and exits with a usage line otherwise)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be an integer >= 1, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be an integer >= 1, got {value}")
    return value
