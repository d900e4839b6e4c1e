"""Shared test setup: two fake CPU devices, persistent compilation cache."""

import importlib.util
import os
from pathlib import Path

# Two fake CPU devices for the data-parallel tests (set before JAX starts).
if "xla_force_host_platform_device_count" not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = (
        os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=2"
    ).strip()

import jax  # noqa: E402
import pytest  # noqa: E402

_CACHE = os.environ.get(
    "MLF_JAX_TEST_CACHE", str(Path(__file__).resolve().parent.parent / ".jax_cache")
)
jax.config.update("jax_compilation_cache_dir", _CACHE)
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)


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
