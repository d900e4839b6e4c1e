"""A run resumes on another number of devices: 2 -> 1 and 1 -> 2 fake CPU devices, each
finishing its run, saying so in one line, and listing both counts in results.json."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from mlf_jax.train import read_metrics

from ..conftest import subprocess_xla_flags

ROOT = Path(__file__).resolve().parents[2]
STEPS_PER_EPOCH = 1437 // 64  # digits' training split, the config's batch

# four training processes (about a minute together): `make test-slow`
pytestmark = pytest.mark.slow


def _start(workdir: Path, devices: int, epochs: int, *extra: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "XLA_FLAGS": subprocess_xla_flags(devices)}
    env.pop("MLF_JAX_CPU_DEVICES", None)
    return subprocess.Popen(
        [sys.executable, "-m", "experiments.train", "--config=experiments/configs/digits.py",
         f"--workdir={workdir}", f"--config.num_epochs={epochs}", "--config.batch_size=64",
         "--config.model.widths=(4,4,4)", "--config.model.time_steps=1", *extra],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip


def _finish(proc: subprocess.Popen) -> str:
    out, _ = proc.communicate(timeout=600)
    assert proc.returncode == 0, out[-3000:]
    return out


def test_a_run_resumes_on_another_device_count_and_finishes(tmp_path):
    moves = [(2, 1), (1, 2)]
    first = [_start(tmp_path / f"{a}to{b}", a, 1) for a, b in moves]
    for proc in first:
        _finish(proc)
    second = [_start(tmp_path / f"{a}to{b}", b, 2, "--allow_change=num_epochs") for a, b in moves]
    for (a, b), proc in zip(moves, second, strict=True):
        out = _finish(proc)
        assert f"resumed from checkpoint at step {STEPS_PER_EPOCH}" in out
        notice = [line for line in out.splitlines() if "the checkpoint was written on" in line]
        assert len(notice) == 1, out[-3000:]
        assert f"written on {a} device(s), this run has {b}" in notice[0]
        results = json.loads((tmp_path / f"{a}to{b}" / "results.json").read_text())
        assert results["steps"] == 2 * STEPS_PER_EPOCH and not results["preempted"]
        assert results["device_counts"] == [a, b]
        evals = [r for r in read_metrics(tmp_path / f"{a}to{b}") if r["kind"] == "eval"]
        assert [r["epoch"] for r in evals] == [1, 2]  # one evaluation per device count
        assert results["final_test_accuracy"] == evals[-1]["test_accuracy"]
