"""Shared test setup: persistent compilation cache, float32 defaults."""

import os
from pathlib import Path

import jax

_CACHE = os.environ.get(
    "MLF_JAX_TEST_CACHE", str(Path(__file__).resolve().parent.parent / ".jax_cache")
)
jax.config.update("jax_compilation_cache_dir", _CACHE)
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)
