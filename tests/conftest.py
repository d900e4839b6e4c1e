"""Shared test setup: two fake CPU devices, persistent compilation cache."""

import gc
import importlib.util
import os
from pathlib import Path

# Two fake CPU devices for the data-parallel tests (set before JAX starts).
if "xla_force_host_platform_device_count" not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = (
        os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=2"
    ).strip()

# XLA's backend (LLVM) at optimisation level 0: compiling is most of the suite's time, and
# level 0 compiles these small programs about 5x faster. The code it makes computes the same
# operations, but may round a float sum differently (a ResNet's gradients moved by up to 1e-7),
# so a test compares two results computed in one process, or holds them to a tolerance, as it
# would anyway. MLF_JAX_TEST_OPT=default keeps XLA's own level (`make test-slow` runs the parity
# tests with the authors' nets again that way, as a user compiles them), as does a level
# already set in XLA_FLAGS.
FAST_COMPILE = (
    ""
    if os.environ.get("MLF_JAX_TEST_OPT") == "default"
    or "xla_backend_optimization_level" in os.environ["XLA_FLAGS"]
    else "--xla_backend_optimization_level=0"
)
os.environ["XLA_FLAGS"] = f"{os.environ['XLA_FLAGS']} {FAST_COMPILE}".strip()


def subprocess_xla_flags(devices: int) -> str:
    """XLA_FLAGS for a test's subprocess: ``devices`` fake CPU devices, compiled as here."""
    return f"--xla_force_host_platform_device_count={devices} {FAST_COMPILE}".strip()


import jax  # noqa: E402
import pytest  # noqa: E402

_CACHE = os.environ.get(
    "MLF_JAX_TEST_CACHE", str(Path(__file__).resolve().parent.parent / ".jax_cache")
)
jax.config.update("jax_compilation_cache_dir", _CACHE)
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)
# A bounded cache makes JAX take a file lock around every read and write of it, so the two
# xdist workers of `make test` (and the subprocesses the tests start) share one cache safely;
# an unbounded one (JAX's default) writes entries unlocked, which a second process can read
# half-written.
jax.config.update("jax_compilation_cache_max_size", 4 * 2**30)


@pytest.fixture(scope="module", autouse=True)
def _release_compiled_code():
    """After each test module, drop JAX's in-memory compilation caches.

    Every jitted function keeps its executables, and their constants, for the life of the
    process: over the whole suite that grew one test process past 5 GB. Modules share few
    compiled functions, and those few come back from the persistent cache above.
    """
    yield
    jax.clear_caches()
    gc.collect()


#: Test files that train models, start processes or servers, or run the authors' whole nets:
#: marked ``integration`` (``make test-fast`` leaves them out; ``make test`` runs them).
INTEGRATION = (
    "tests/experiments/",
    "tests/train/test_multihost.py",
    "tests/train/test_lock.py",
    "tests/train/test_checkpoint.py",
    "tests/models/test_official_parity.py",
    "tests/test_notebooks.py",
    "tests/data/test_fashion_mnist_download.py",
    "tests/kernels/test_export_kernels.py",
)


def pytest_collection_modifyitems(config, items):
    root = Path(__file__).resolve().parent.parent
    for item in items:
        path = Path(item.fspath).resolve().relative_to(root).as_posix()
        if path.startswith(INTEGRATION):
            item.add_marker(pytest.mark.integration)


#: For tests of the core that also use ``mlf_jax.train``: skipped where the ``train`` extra is
#: not installed (``make test-min`` runs the core tests with the core install only).
needs_train = pytest.mark.skipif(
    any(importlib.util.find_spec(m) is None for m in ("tensorboardX", "orbax", "fsspec")),
    reason="needs the train extra (pip install -e '.[train]')",
)
