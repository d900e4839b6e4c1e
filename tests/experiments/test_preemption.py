"""A run killed with SIGKILL after a checkpoint, then restarted, ends like an uninterrupted run."""

import os
import subprocess
import sys
import time
from pathlib import Path

import jax
import numpy as np

from experiments import train
from experiments.configs import digits as digits_config
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
    model = train.build_model(config)
    steps_per_epoch = 1437 // config.batch_size
    tx = train.mj.train.sgd(
        train.mj.train.learning_rate_schedule(
            config.learning_rate, steps_per_epoch, 3, kind="cosine"
        ),
        config.momentum,
        config.weight_decay,
    )
    state = train.mj.train.create_train_state(
        model, tx, jax.random.key(0), np.zeros((2, 8, 8, 1), np.float32)
    )
    return Checkpointer(workdir / "checkpoints").restore_latest(
        state_to_tree(state, jax.random.key(0))
    )


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

    step_full, full, _ = _latest(tmp_path / "full")
    step_run, run, _ = _latest(tmp_path / "run")
    assert step_full == step_run == total
    jax.tree.map(
        lambda a, b: np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-6, atol=1e-7),
        run["params"],
        full["params"],
    )
