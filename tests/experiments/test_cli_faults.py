"""The command line under faults (issue 39): every checkpoint unreadable, a full disk and
no free inodes during a checkpoint save. Each ends in one line (``error: ...``, and the
notices of the checkpoints skipped), exit code 1, no traceback, no temporary folder left."""

import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import jax
import pytest

from experiments import trainer
from experiments.configs import digits as digits_config

from ..conftest import subprocess_xla_flags
from ..train.test_checkpoint import _flip_bytes_of_the_largest_data_file

ROOT = Path(__file__).resolve().parents[2]
OVERRIDES = [
    "--config.num_epochs=1",
    "--config.checkpoint_every_steps=5",
    "--config.model.widths=(4,4,4)",
    "--config.model.time_steps=1",
]


def _train(workdir, *extra):
    command = [
        sys.executable, "-m", "experiments.train", "--config=experiments/configs/digits.py",
        f"--workdir={workdir}", *OVERRIDES, *extra,
        f"--config.compilation_cache_dir={jax.config.jax_compilation_cache_dir}",
    ]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(ROOT), "MLF_JAX_ALLOCATOR": "system"}
    return subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)


def _lines(stderr):
    """The lines of ``stderr`` that are not the progress bar."""
    return [x for x in stderr.splitlines() if x.strip() and "%|" not in x]


def _config():
    config = digits_config.get_config()
    config.num_epochs = 1
    config.checkpoint_every_steps = 5
    config.model.widths = (4, 4, 4)
    config.model.time_steps = 1
    return config


@pytest.mark.slow
@pytest.mark.parametrize("damage", ["flipped_bytes", "garbage_files"])
def test_every_checkpoint_unreadable_is_refused_in_a_few_lines(tmp_path, damage):
    workdir = tmp_path / "run"
    trainer.train_and_evaluate(_config(), workdir)
    (workdir / trainer.RESULTS).unlink()  # as if it had not finished
    steps = sorted(p.name for p in (workdir / "checkpoints").iterdir())
    for step in steps:
        if damage == "flipped_bytes":
            _flip_bytes_of_the_largest_data_file(workdir / "checkpoints" / step)
        else:
            for root, _, files in os.walk(workdir / "checkpoints" / step / "state"):
                for f in files:
                    Path(root, f).write_bytes(b"\x00garbage")
    done = _train(workdir)
    lines = _lines(done.stderr)
    assert done.returncode == 1, done.stderr[-3000:]
    assert "Traceback" not in done.stderr and "Event loop is closed" not in done.stderr
    *skipped, error = lines
    assert len(skipped) == len(steps) and all("could not be restored" in x for x in skipped), lines
    assert error.startswith("error: none of the checkpoints"), lines
    assert sorted(p.name for p in (workdir / "checkpoints").iterdir()) == steps  # untouched


def _tmpfs(path, options):
    """Mounts a tmpfs with ``options`` on ``path``; skips the test where that is not allowed."""
    path.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", options, f"mlfjax-{uuid.uuid4().hex[:8]}", str(path)],
        capture_output=True,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({mounted.stderr.decode().strip()})")


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("mount") is None, reason="needs mount")
@pytest.mark.parametrize(
    "options, saved_before",
    [("size=128k", False), ("size=320k", True), ("nr_inodes=25", False), ("nr_inodes=70", True)],
    ids=["disk_full_at_the_first_save", "disk_full_later", "no_inodes_first", "no_inodes_later"],
)
def test_a_full_disk_during_a_checkpoint_save_ends_in_one_line(tmp_path, options, saved_before):
    """The sizes leave room for the run's small files and for no checkpoint or one (about
    220 KB and 30 to 45 files each), so that a save fails: the first or a later one."""
    disk = tmp_path / "disk"
    _tmpfs(disk, options)
    try:
        done = _train(disk / "run")
        lines = _lines(done.stderr)
        assert done.returncode == 1, done.stderr[-3000:]
        assert "Traceback" not in done.stderr and "exception was never retrieved" not in done.stderr
        assert len(lines) == 1, lines
        assert lines[0].startswith("error: could not save the checkpoint at step"), lines
        assert "No space left on device" in lines[0] or "RESOURCE_EXHAUSTED" in lines[0]
        left = os.listdir(disk / "run" / "checkpoints")
        assert all(name.isdigit() for name in left), left  # no temporary folder
        assert bool(left) == saved_before, left
        assert not (disk / "run" / "run.lock").exists()
    finally:
        subprocess.run(["umount", str(disk)], check=False)


def _complete_steps(checkpoints):
    if not checkpoints.is_dir():
        return []
    return sorted(
        int(p.name)
        for p in checkpoints.iterdir()
        if p.name.isdigit() and (p / "commit_success.txt").exists()
    )


@pytest.mark.slow
def test_when_one_of_two_processes_dies_the_other_stops_and_a_restart_resumes(tmp_path):
    """What docs/guarantees.md says: the survivor ends (not exit code 0) within JAX's
    heartbeat timeout (100 s), writes no checkpoint after the death, and a restart (here on
    one process) resumes from the newest complete checkpoint and finishes the run."""
    import socket
    import time

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    workdir = tmp_path / "run"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "MLF_JAX_ALLOCATOR": "system"}
    env["XLA_FLAGS"] = subprocess_xla_flags(1)
    base = [
        sys.executable, "-m", "experiments.train", "--config=experiments/configs/digits.py",
        f"--workdir={workdir}", *OVERRIDES,
        f"--config.compilation_cache_dir={jax.config.jax_compilation_cache_dir}",
    ]  # fmt: skip
    procs = [
        subprocess.Popen(
            [
                *base,
                f"--config.distributed.coordinator_address=127.0.0.1:{port}",
                "--config.distributed.num_processes=2",
                f"--config.distributed.process_id={i}",
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
        deadline = time.time() + 400
        while not _complete_steps(workdir / "checkpoints") and time.time() < deadline:
            assert all(p.poll() is None for p in procs), [p.poll() for p in procs]
            time.sleep(0.05)
        procs[1].kill()
        killed_at, saved = time.time(), _complete_steps(workdir / "checkpoints")
        assert saved and saved[-1] < 44, saved
        out, _ = procs[0].communicate(timeout=100 + 80)
        waited = time.time() - killed_at
    finally:
        for p in procs:
            p.kill()
    assert procs[0].returncode != 0, out[-3000:]
    assert waited < 100 + 60, waited
    assert _complete_steps(workdir / "checkpoints")[-1] <= saved[-1] + 5  # a save under way
    env["XLA_FLAGS"] = subprocess_xla_flags(2)
    again = subprocess.run(base, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr[-3000:]
    resumed = [x for x in (again.stdout + again.stderr).splitlines() if "resumed from" in x]
    assert resumed and int(resumed[0].split("at step ")[1].split()[0]) >= saved[-1], resumed
    assert '"steps": 44' in again.stdout
