"""Run an experiment process under jemalloc: fresh XLA:CPU buffers without page faults.

On Linux, XLA:CPU gets the memory of every large buffer (outputs, the temporaries of
each step) from the C allocator, and glibc's malloc returns large blocks to the system
when they are freed. The next step then touches fresh pages: one page fault per 4 KiB,
each zero-filled by the kernel, which slows every step; jemalloc with
``oversize_threshold:0`` keeps the freed blocks for reuse (figures: the benchmarks guide,
``docs/guides/benchmarks.md``, section "Allocator"). jemalloc's default ``oversize_threshold``
(8 MiB) gives large blocks back at once as well, hence the setting; freed memory is still
returned after jemalloc's usual 10 s decay.

:func:`reexec_with_jemalloc` is called first by the command-line entry points
(``experiments.train``, ``experiments.depth_study``, ``experiments.bench.*``). It needs the
shared library (Debian/Ubuntu: ``apt-get install libjemalloc2``, or ``make jemalloc``);
without it the process goes on with the system allocator, silently: :func:`notice` says
so, once, where it matters (``experiments.train`` calls it when it starts training on the
CPU backend; not for ``--help``, a mistake, a dry run or a GPU/TPU run, which jemalloc
does not speed up). ``MLF_JAX_ALLOCATOR=system`` turns it off. In a notebook, start
Jupyter itself with ``LD_PRELOAD=<path of libjemalloc.so.2> MALLOC_CONF=oversize_threshold:0``.
"""

from __future__ import annotations

import ctypes.util
import os
import sys
from pathlib import Path

__all__ = [
    "ENV_VAR",
    "MALLOC_CONF",
    "find_jemalloc",
    "allocator",
    "reexec_with_jemalloc",
    "notice",
]

#: ``jemalloc`` (default) or ``system``.
ENV_VAR = "MLF_JAX_ALLOCATOR"
#: jemalloc options set when ``MALLOC_CONF`` is not already set.
MALLOC_CONF = "oversize_threshold:0"
#: Set in the re-executed process, so that a preload that did not take is not retried.
_TRIED = "_MLF_JAX_JEMALLOC_TRIED"
_PATHS = (
    "/usr/lib/x86_64-linux-gnu/libjemalloc.so.2",
    "/usr/lib/aarch64-linux-gnu/libjemalloc.so.2",
    "/usr/lib64/libjemalloc.so.2",
    "/usr/lib/libjemalloc.so.2",
    "/usr/local/lib/libjemalloc.so.2",
)


def find_jemalloc() -> str | None:
    """Path of the jemalloc shared library, or ``None``."""
    for path in _PATHS:
        if Path(path).is_file():
            return path
    name = ctypes.util.find_library("jemalloc")
    return name if name and Path(name).is_absolute() else None


def allocator() -> str:
    """``'jemalloc'`` if it is loaded in this process, else ``'system'``."""
    try:
        maps = Path("/proc/self/maps").read_text()
    except OSError:
        return "system"
    return "jemalloc" if "libjemalloc" in maps else "system"


def _requested() -> str:
    choice = os.environ.get(ENV_VAR, "jemalloc").strip().lower()
    if choice not in ("jemalloc", "system"):
        raise ValueError(f"{ENV_VAR} must be 'jemalloc' or 'system', got {choice!r}")
    return choice


def reexec_with_jemalloc() -> None:
    """Re-executes this process (same interpreter and arguments) with jemalloc preloaded.

    Returns without doing anything when jemalloc is already loaded, when
    ``MLF_JAX_ALLOCATOR=system``, off Linux, after one try, or when the library is
    missing (silently: :func:`notice`). Call it before any work is done: the process is
    replaced. Raises ``ValueError`` for an unknown ``MLF_JAX_ALLOCATOR``.
    """
    if _requested() == "system" or not sys.platform.startswith("linux"):
        return
    if allocator() == "jemalloc" or os.environ.get(_TRIED):
        return
    library = find_jemalloc()
    if library is None:
        return
    env = dict(os.environ)
    env["LD_PRELOAD"] = ":".join(p for p in (library, env.get("LD_PRELOAD")) if p)
    env.setdefault("MALLOC_CONF", MALLOC_CONF)
    env[_TRIED] = "1"
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(sys.executable, [sys.executable, *sys.orig_argv[1:]], env)


_NOTICED: list[bool] = []


def notice() -> str | None:
    """Says once per process, on stderr, that jemalloc would speed this process up and is
    missing (or did not load); returns the line, or ``None`` when there is nothing to say
    (jemalloc loaded, ``MLF_JAX_ALLOCATOR=system``, off Linux, said already).

    Call it where the allocator matters: before training on the CPU backend.
    """
    if _NOTICED or _requested() == "system" or not sys.platform.startswith("linux"):
        return None
    if allocator() == "jemalloc":
        return None
    _NOTICED.append(True)
    why = "not found" if find_jemalloc() is None else "did not load"
    line = (
        f"mlf_jax: jemalloc {why}, training with the system allocator (steps on CPU are "
        f"slower: `make jemalloc` or apt-get install libjemalloc2; {ENV_VAR}=system hides "
        "this)"
    )
    print(line, file=sys.stderr, flush=True)
    return line
