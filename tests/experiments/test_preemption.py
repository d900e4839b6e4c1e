"""The command line under signals: a run killed with SIGKILL after a checkpoint, then
restarted, ends like an uninterrupted run; Ctrl-C saves and exits cleanly; a second run
on the same workdir, and a restart with another config, are refused."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import jax
import numpy as np
import pytest

import mlf_jax as mj
from experiments.configs import digits as digits_config
from experiments.models import build_model
from mlf_jax.train import read_metrics
from mlf_jax.train.checkpoint import Checkpointer, state_to_tree

ROOT = Path(__file__).resolve().parents[2]
OVERRIDES = [
    "--config.num_epochs=3",
    "--config.checkpoint_every_steps=5",
    "--config.model.widths=(4,4,4)",
    "--config.model.time_steps=1",
]


def _command(workdir):
    return [
        sys.executable, "-m", "experiments.train",
        "--config=experiments/configs/digits.py", f"--workdir={workdir}", *OVERRIDES,
    ]  # fmt: skip


def _env():
    return {**os.environ, "PYTHONPATH": str(ROOT)}


def _latest(workdir):
    config = digits_config.get_config()
    config.model.widths = (4, 4, 4)
    config.model.time_steps = 1
    model = build_model(config)
    steps_per_epoch = 1437 // config.batch_size
    tx = mj.train.sgd(
        mj.train.learning_rate_schedule(config.learning_rate, steps_per_epoch, 3, kind="cosine"),
        config.momentum,
        config.weight_decay,
    )
    state = mj.train.create_train_state(
        model, tx, jax.random.key(0), np.zeros((2, 8, 8, 1), np.float32)
    )
    return Checkpointer(workdir / "checkpoints").restore_latest(
        state_to_tree(state, jax.random.key(0))
    )


@pytest.mark.slow
def test_sigkill_then_restart_equals_uninterrupted(tmp_path):
    done = subprocess.run(
        _command(tmp_path / "full"),
        cwd=ROOT,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]

    proc = subprocess.Popen(
        _command(tmp_path / "run"),
        cwd=ROOT,
        env=_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    ckpts = tmp_path / "run" / "checkpoints"
    deadline = time.time() + 240
    while time.time() < deadline and proc.poll() is None:
        if ckpts.is_dir() and any(p.name.isdigit() for p in ckpts.iterdir()):
            break
        time.sleep(0.02)
    proc.kill()  # SIGKILL: no chance to save anything more
    proc.wait()
    steps = Checkpointer(ckpts).all_steps()
    total = 3 * (1437 // 32)
    assert steps and steps[-1] < total, f"the run was not interrupted: {steps}"

    again = subprocess.run(
        _command(tmp_path / "run"),
        cwd=ROOT,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert again.returncode == 0, again.stderr[-3000:]
    assert f"resumed from checkpoint at step {steps[-1]}" in again.stderr + again.stdout
    assert "taking over the stale lock" in again.stderr  # the killed run's lock
    records = [(r["kind"], r["step"]) for r in read_metrics(tmp_path / "run")]
    assert len(records) == len(set(records))  # no step logged twice after the resume

    step_full, full, _ = _latest(tmp_path / "full")
    step_run, run, _ = _latest(tmp_path / "run")
    assert step_full == step_run == total
    jax.tree.map(
        lambda a, b: np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-6, atol=1e-7),
        run["params"],
        full["params"],
    )


def _wait_for_checkpoint(proc, ckpts, timeout=240):
    deadline = time.time() + timeout
    while time.time() < deadline and proc.poll() is None:
        if ckpts.is_dir() and any(p.name.isdigit() for p in ckpts.iterdir()):
            return
        time.sleep(0.05)
    raise AssertionError(f"no checkpoint appeared (exit code {proc.poll()})")


def test_ctrl_c_saves_a_second_run_is_refused_and_a_changed_config_too(tmp_path):
    workdir = tmp_path / "run"
    command = [*_command(workdir), "--config.num_epochs=50"]
    proc = subprocess.Popen(
        command, cwd=ROOT, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        _wait_for_checkpoint(proc, workdir / "checkpoints")
        second = subprocess.run(
            command, cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=120
        )
        assert second.returncode == 1
        assert f"in use by another run: process {proc.pid}" in second.stderr
        assert "Traceback" not in second.stderr
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == 0, err[-3000:]
    assert "Traceback" not in err
    (line,) = [x for x in (out + err).splitlines() if "SIGINT:" in x]
    assert line.startswith("SIGINT: saved a checkpoint at step")
    step = int(line.split("at step ")[1].split()[0])
    assert Checkpointer(workdir / "checkpoints").all_steps()[-1] == step
    assert not (workdir / "run.lock").exists()

    before = sorted(os.listdir(workdir / "checkpoints"))
    changed = subprocess.run(
        [a.replace("widths=(4,4,4)", "widths=(4,4,8)") for a in command],
        cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert changed.returncode == 1
    assert "differing keys: model.widths: [4, 4, 4] -> [4, 4, 8]" in changed.stderr
    assert "Traceback" not in changed.stderr
    assert sorted(os.listdir(workdir / "checkpoints")) == before


def _mapped(pid, library):
    """Whether process ``pid`` has loaded a shared library whose path contains ``library``."""
    try:
        return library in Path(f"/proc/{pid}/maps").read_text()
    except OSError:
        return False


@pytest.mark.skipif(not Path("/proc/self/maps").exists(), reason="reads /proc/<pid>/maps")
def test_ctrl_c_at_any_moment_of_start_up_stops_with_one_line(tmp_path):
    """During the imports (as soon as jaxlib's, then TensorStore's library is loaded) and
    while the data are read (after the devices line): one line on stderr, exit code 130,
    no traceback, nothing left in the workdir; never a run that goes on."""
    env = {**_env(), "MLF_JAX_ALLOCATOR": "system"}
    runs = {}
    for moment in ("jaxlib", "tensorstore", "data"):
        runs[moment] = subprocess.Popen(
            _command(tmp_path / moment), cwd=ROOT, env=env,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
    deadline = time.time() + 120
    for library in ("jaxlib", "tensorstore"):
        proc = runs[library]
        while not _mapped(proc.pid, library) and proc.poll() is None and time.time() < deadline:
            time.sleep(0.005)
        proc.send_signal(signal.SIGINT)
    proc = runs["data"]
    assert proc.stdout.readline().startswith("processes:")  # before the data are read
    proc.send_signal(signal.SIGINT)
    for moment, proc in runs.items():
        try:
            out, err = proc.communicate(timeout=180)
        finally:
            proc.kill()
        lines = [x for x in err.splitlines() if x.strip()]
        assert proc.returncode == 130, (moment, proc.returncode, err[-2000:])
        assert len(lines) == 1 and lines[0].startswith("interrupted: stopped"), (moment, err)
        workdir = tmp_path / moment
        assert not (workdir / "checkpoints").exists() or not os.listdir(workdir / "checkpoints")
        assert not (workdir / "run.lock").exists()
