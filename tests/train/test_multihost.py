"""Two processes on 127.0.0.1 (gloo collectives) train like one process with the global batch."""

import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from ..conftest import subprocess_xla_flags
from . import parallel_case as case

ROOT = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_processes_end_with_the_single_process_parameters(tmp_path):
    port = str(_free_port())
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env["XLA_FLAGS"] = subprocess_xla_flags(1)
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tests.train.multihost_worker",
                str(i),
                port,
                str(tmp_path / f"p{i}.npz"),
            ],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for i in range(2)
    ]
    outputs = []
    try:
        for p in procs:
            outputs.append(p.communicate(timeout=240)[0])
    finally:
        for p in procs:
            p.kill()
    for p, out in zip(procs, outputs, strict=True):
        assert p.returncode == 0, out[-3000:]

    ref_state, ref_losses = case.single_device_run()
    ref = case.flat(ref_state.params)
    for i in range(2):
        got = np.load(tmp_path / f"p{i}.npz")
        np.testing.assert_allclose(got["losses"], ref_losses, rtol=1e-5)
        assert set(ref) == set(got.files) - {"losses"}
        for name, value in ref.items():
            np.testing.assert_allclose(got[name], value, rtol=1e-5, atol=1e-5, err_msg=name)


def test_partial_distributed_settings_are_an_error():
    from mlf_jax.train import distributed

    with pytest.raises(ValueError, match=r"missing \['num_processes', 'process_id'\]"):
        distributed.initialize("127.0.0.1:1234")


def test_a_missing_process_is_reported_in_one_line_after_the_timeout(tmp_path):
    """Process 1 of 2 starts alone: it says whom it waits for, then gives up clearly."""
    port = _free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT), "MLF_JAX_ALLOCATOR": "system"}
    env["XLA_FLAGS"] = subprocess_xla_flags(1)
    out = subprocess.run(
        [sys.executable, "-m", "experiments.train", "--config=experiments/configs/digits.py",
         f"--workdir={tmp_path}", f"--config.distributed.coordinator_address=127.0.0.1:{port}",
         "--config.distributed.num_processes=2", "--config.distributed.process_id=1",
         "--config.distributed.timeout_seconds=3"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert out.returncode == 1, out.stderr[-3000:]
    assert f"waiting for the 2 processes at coordinator 127.0.0.1:{port} (timeout 3 s)" in (
        out.stderr
    )
    assert "error: multi-host start-up timed out after 3 s" in out.stderr
    assert "Check failure stack trace" not in out.stderr and "Traceback" not in out.stderr


def _train_two_processes(workdir, *extra):
    port = str(_free_port())
    env = {**os.environ, "PYTHONPATH": str(ROOT), "MLF_JAX_ALLOCATOR": "system"}
    env["XLA_FLAGS"] = subprocess_xla_flags(1)
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "experiments.train",
                "--config=experiments/configs/digits.py",
                f"--workdir={workdir}",
                "--config.model.widths=(4,4,4)",
                "--config.model.time_steps=1",
                "--config.compilation_cache_dir=",
                f"--config.distributed.coordinator_address=127.0.0.1:{port}",
                "--config.distributed.num_processes=2",
                f"--config.distributed.process_id={i}",
                *extra,
            ],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )  # fmt: skip
        for i in range(2)
    ]
    try:
        outputs = [p.communicate(timeout=300)[0] for p in procs]
    finally:
        for p in procs:
            p.kill()
    for p, out in zip(procs, outputs, strict=True):
        assert p.returncode == 0, out[-3000:]
    return outputs


@pytest.mark.slow
def test_two_processes_resume_each_from_its_own_data_position(tmp_path):
    """Every process reads its own shard: each one's position is saved and restored."""
    _train_two_processes(tmp_path / "run", "--config.num_epochs=1")
    outputs = _train_two_processes(
        tmp_path / "run", "--config.num_epochs=2", "--allow_change=num_epochs"
    )
    steps = 2 * (1437 // 32)
    for out in outputs:
        assert f"resumed from checkpoint at step {steps // 2}" in out
    results = __import__("json").loads((tmp_path / "run" / "results.json").read_text())
    assert results["steps"] == steps and not results["preempted"]


@pytest.mark.slow
def test_a_two_process_run_resumes_in_one_process_and_finishes(tmp_path):
    """Another number of processes: other shards; the run goes on at its step, saying so."""
    _train_two_processes(tmp_path / "run", "--config.num_epochs=1")
    env = {**os.environ, "PYTHONPATH": str(ROOT), "MLF_JAX_ALLOCATOR": "system"}
    env["XLA_FLAGS"] = subprocess_xla_flags(1)
    done = subprocess.run(
        [sys.executable, "-m", "experiments.train", "--config=experiments/configs/digits.py",
         f"--workdir={tmp_path / 'run'}", "--config.model.widths=(4,4,4)",
         "--config.model.time_steps=1", "--config.compilation_cache_dir=",
         "--config.num_epochs=2", "--allow_change=num_epochs"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    out = done.stdout + done.stderr
    assert done.returncode == 0, out[-3000:]
    steps = 1437 // 32  # per epoch, the config's global batch of 32
    assert f"resumed from checkpoint at step {steps}" in out
    notice = [line for line in out.splitlines() if "written by 2 process(es)" in line]
    assert len(notice) == 1 and "this run has 1" in notice[0], out[-3000:]
    results = __import__("json").loads((tmp_path / "run" / "results.json").read_text())
    assert results["steps"] == 2 * steps and not results["preempted"]
    assert results["process_counts"] == [2, 1] and results["device_counts"] == [2, 1]
