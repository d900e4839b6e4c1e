"""Data parallelism of an mlf_jax.nnx model with jax.sharding: on 4 fake CPU devices (a
subprocess), the sharded train step updates the parameters and tdBN's running statistics as
one device does on the whole batch (the statistics are the global batch's, no axis name)."""

import json
import os
import subprocess
import sys
from pathlib import Path

from ..conftest import subprocess_xla_flags

ROOT = Path(__file__).resolve().parents[2]


def test_a_sharded_step_on_four_devices_is_the_step_on_one():
    env = {**os.environ, "XLA_FLAGS": subprocess_xla_flags(4), "PYTHONPATH": str(ROOT)}
    result = subprocess.run(
        [sys.executable, "-m", "tests.nnx.data_parallel_worker"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    found = json.loads(result.stdout.strip().splitlines()[-1])
    assert found["input_shards"] == 4 and found["state_devices"] == 4
    sharded, one = found["losses"]
    assert abs(sharded[0] - one[0]) < 1e-5 and abs(sharded[1] - one[1]) < 1e-5
    assert found["stat_scale"] > 0.01  # the statistics moved
    assert found["max_stat_diff"] < 1e-5
    assert found["max_param_diff"] < 1e-5
