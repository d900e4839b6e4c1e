"""``python -m experiments.train`` as a new user meets it: help, and one line per mistake."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from experiments import allocator

ROOT = Path(__file__).resolve().parents[2]


def _train(*args, **env):
    """The command in a fresh process, with the user's allocator setting (none)."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("MLF_JAX_")}
    base.pop(allocator._TRIED, None)
    return subprocess.run(
        [sys.executable, "-m", "experiments.train", *args],
        cwd=ROOT, env={**base, **env}, capture_output=True, text=True, timeout=120,
    )  # fmt: skip


@pytest.mark.parametrize("flag", ["--help", "-h"])
def test_help_prints_the_usage_and_the_flags_and_exits_0(flag):
    out = _train(flag)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.startswith("Train a spiking DS-ResNet from a config")
    for name in ("--config", "--workdir", "dry_run", "--allow_change", "--helpfull"):
        assert name in out.stdout
    assert out.stderr == ""  # no allocator notice, no error


_MULTI_HOST = "--config.distributed."
MISTAKES = {
    "only num_processes": (
        ["num_processes=2"],
        "multi-host needs config.distributed.coordinator_address, num_processes and "
        "process_id together; missing ['coordinator_address', 'process_id']",
    ),
    "process_id 5 of 2": (
        ["coordinator_address=127.0.0.1:1234", "num_processes=2", "process_id=5"],
        "config.distributed.process_id must be in 0 .. 1",
    ),
    "no port": (
        ["coordinator_address=localhost", "num_processes=2", "process_id=0"],
        "config.distributed.coordinator_address must be host:port",
    ),
    "auto off a cluster": (
        ["auto=True"],
        "config.distributed.auto=True found no cluster to join",
    ),
}


@pytest.mark.parametrize("dry", [False, True], ids=["run", "dry_run"])
@pytest.mark.parametrize("mistake", list(MISTAKES))
def test_each_multi_host_mistake_is_one_error_line(mistake, dry, tmp_path):
    settings, message = MISTAKES[mistake]
    out = _train(
        "--config=experiments/configs/digits.py", f"--workdir={tmp_path / 'w'}",
        *[_MULTI_HOST + s for s in settings], *(["--dry_run"] if dry else []),
    )  # fmt: skip
    assert out.returncode == 1
    assert out.stderr.splitlines() == [out.stderr.strip()], out.stderr[-3000:]
    assert out.stderr.startswith("error: multi-host") and message in out.stderr, out.stderr
    assert out.stdout == ""
    assert not (tmp_path / "w").exists()
