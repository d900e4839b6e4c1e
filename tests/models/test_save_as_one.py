"""mj.models.save replaces the weights and their sidecar as one unit: a kill between any two
of its file operations, a full disk, or two writers at once leave the old pair or the new one
(completed by the next load), never weights beside a sidecar that describes others."""

import errno
import hashlib
import json
import os
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import mlf_jax as mj
from mlf_jax.models import _pair

ROOT = Path(__file__).resolve().parents[2]

#: Saves a model whose weights are all ``value`` to ``stem``; ``os.replace`` and file
#: writes are counted, and the process dies (``os._exit``, no clean-up) at the ``kill_at``-th.
_SAVER = textwrap.dedent(
    """
    import os, sys, builtins
    import jax, jax.numpy as jnp
    import mlf_jax as mj

    stem, value, kill_at = sys.argv[1], float(sys.argv[2]), int(sys.argv[3])
    model = mj.models.resnet(8, widths=(2, 2, 2), time_steps=1, num_classes=3, in_channels=1)
    variables = jax.jit(model.init)(jax.random.key(0), jnp.zeros((1, 8, 8, 1)))
    variables = jax.tree.map(lambda v: jnp.full_like(v, value), variables)
    count = 0
    real_replace, real_open = os.replace, builtins.open

    def step():
        global count
        count += 1
        if count == kill_at:
            os._exit(9)

    def replace(*args, **kwargs):
        step()
        return real_replace(*args, **kwargs)

    def open_(file, mode="r", *args, **kwargs):
        if "w" in mode:
            step()
        return real_open(file, mode, *args, **kwargs)

    os.replace, builtins.open = replace, open_
    mj.models.save(stem, model, variables, value=value)
    print("steps", count)
    """
)


def _save(stem, value, kill_at=0):
    return subprocess.run(
        [sys.executable, "-c", _SAVER, str(stem), str(value), str(kill_at)],
        capture_output=True, text=True, timeout=300, cwd=ROOT,
    )  # fmt: skip


def _loaded_value(stem):
    """The value the loaded weights hold, checked to be the one their sidecar records."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        _, variables, info = mj.models.load(stem)
    values = {float(v) for leaf in jax.tree.leaves(variables) for v in np.ravel(leaf)}
    assert values == {info["value"]}, (values, info["value"])  # weights and sidecar agree
    return info["value"], [str(w.message) for w in caught]


def test_a_kill_between_any_two_file_operations_leaves_one_pair(tmp_path):
    stem = tmp_path / "net"
    first = _save(stem, 1.0)
    assert first.returncode == 0, first.stderr[-2000:]
    steps = int(first.stdout.split()[-1])
    assert steps >= 4  # two writes and two renames at least
    before, seen = 1.0, set()
    for kill_at in range(1, steps + 1):
        new = 2.0 + kill_at
        done = _save(stem, new, kill_at)
        assert done.returncode == 9, done.stderr[-2000:]
        value, _ = _loaded_value(stem)
        assert value in (before, new), (kill_at, value)
        seen.add("new" if value == new else "old")
        names = sorted(p.name for p in tmp_path.iterdir())
        assert names == ["net.json", "net.msgpack"], (kill_at, names)  # load cleaned up
        before = value
    assert seen == {"old", "new"}  # the kills fell on both sides of the commit


def test_an_interrupted_committed_save_is_completed_by_load_with_a_notice(tmp_path):
    stem = tmp_path / "net"
    assert _save(stem, 1.0).returncode == 0
    steps = int(_save(stem, 1.5).stdout.split()[-1])
    done = _save(stem, 3.0, kill_at=steps)  # dies at the last rename: the sidecar's
    assert done.returncode == 9
    assert (tmp_path / "net.json.pending").exists()
    with pytest.warns(UserWarning, match="completed a save that was interrupted"):
        _, _, info = mj.models.load(stem)
    assert info["value"] == 3.0 and not (tmp_path / "net.json.pending").exists()


def test_a_full_disk_leaves_the_old_pair_or_nothing_and_says_which(tmp_path, monkeypatch):
    model = mj.models.resnet(8, widths=(2, 2, 2), time_steps=1, in_channels=1)
    variables = jax.jit(model.init)(jax.random.key(0), jnp.zeros((1, 8, 8, 1)))
    real_write = _pair._write_new

    def full_at_the_sidecar(path, data):
        if path.name.endswith(".pending"):
            raise OSError(errno.ENOSPC, "No space left on device")
        real_write(path, data)

    monkeypatch.setattr(_pair, "_write_new", full_at_the_sidecar)
    with pytest.raises(
        OSError, match="could not save .*net.msgpack and net.json .*nothing is left"
    ):
        mj.models.save(tmp_path / "net", model, variables)
    assert list(tmp_path.iterdir()) == []  # no orphan weights
    monkeypatch.setattr(_pair, "_write_new", real_write)
    mj.models.save(tmp_path / "net", model, variables, note="old")
    monkeypatch.setattr(_pair, "_write_new", full_at_the_sidecar)
    with pytest.raises(OSError, match="the old pair is left as it was"):
        mj.models.save(tmp_path / "net", model, variables, note="new")
    assert mj.models.load(tmp_path / "net")[2]["note"] == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["net.json", "net.msgpack"]


def test_concurrent_saves_to_one_stem_leave_one_consistent_pair(tmp_path):
    stem = tmp_path / "net"
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _SAVER, str(stem), str(v), "0"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=ROOT,
        )  # fmt: skip
        for v in (4.0, 5.0, 6.0)
    ]
    for p in procs:
        _, err = p.communicate(timeout=300)
        assert p.returncode == 0, err[-2000:]
    value, notices = _loaded_value(stem)
    assert value in (4.0, 5.0, 6.0) and not notices
    assert sorted(p.name for p in tmp_path.iterdir()) == ["net.json", "net.msgpack"]


def test_the_sidecar_records_the_checksum_of_the_weights_beside_it(tmp_path):
    model = mj.models.resnet(8, widths=(2, 2, 2), time_steps=1, in_channels=1)
    variables = jax.jit(model.init)(jax.random.key(0), jnp.zeros((1, 8, 8, 1)))
    mj.models.save(tmp_path / "net", model, variables)
    sha = hashlib.sha256((tmp_path / "net.msgpack").read_bytes()).hexdigest()
    assert json.loads((tmp_path / "net.json").read_text())["sha256"] == sha
    assert os.listdir(tmp_path) and not list(tmp_path.glob(".*"))
