"""Shared test setup: two fake CPU devices, persistent compilation cache."""

import os
from pathlib import Path

# Two fake CPU devices for the data-parallel tests (set before JAX starts).
if "xla_force_host_platform_device_count" not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = (
        os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=2"
    ).strip()

import jax  # noqa: E402

_CACHE = os.environ.get(
    "MLF_JAX_TEST_CACHE", str(Path(__file__).resolve().parent.parent / ".jax_cache")
)
jax.config.update("jax_compilation_cache_dir", _CACHE)
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)
