"""Orbax checkpoints: round trip, keep N, fallback from a corrupt or partial latest one,
leftovers of killed and failed saves, only finite state."""

import os
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import mlf_jax as mj
from mlf_jax.train.checkpoint import (
    Checkpointer,
    CheckpointError,
    NonFiniteStateError,
    all_finite,
    state_to_tree,
    tree_to_state,
)


@pytest.fixture(scope="module")
def state():
    m = mj.models.resnet(8, widths=(2, 2, 2), num_classes=3, time_steps=1, in_channels=1)
    return mj.train.create_train_state(
        m, mj.train.sgd(0.1), jax.random.key(0), jnp.zeros((2, 8, 8, 1))
    )


def _shifted(tree, k):
    return jax.tree.map(lambda x: x + k, tree)


def _assert_tree_equal(a, b):
    jax.tree.map(lambda x, y: np.testing.assert_array_equal(np.asarray(x), np.asarray(y)), a, b)


def test_round_trip_keeps_state_rng_and_meta(state, tmp_path):
    rng = jax.random.key(42)
    tree = state_to_tree(state.replace(step=7), rng)
    ckpt = Checkpointer(tmp_path, max_to_keep=2)
    ckpt.save(7, tree, {"data": '{"pos": 3}', "best_test_accuracy": 0.5})
    step, restored, meta = Checkpointer(tmp_path).restore_latest(tree)
    assert step == 7 and meta == {"data": '{"pos": 3}', "best_test_accuracy": 0.5}
    _assert_tree_equal(restored, tree)
    new_state, new_rng = tree_to_state(restored, state)
    assert int(new_state.step) == 7
    np.testing.assert_array_equal(jax.random.key_data(new_rng), jax.random.key_data(rng))
    assert new_state.apply_fn is state.apply_fn


def test_keeps_the_last_n(state, tmp_path):
    tree = state_to_tree(state, jax.random.key(0))
    ckpt = Checkpointer(tmp_path, max_to_keep=2)
    for s in (1, 2, 3):
        ckpt.save(s, _shifted(tree, s), {"s": s})
    assert ckpt.all_steps() == [2, 3]
    assert sorted(p for p in os.listdir(tmp_path) if p.isdigit()) == ["2", "3"]


def test_corrupt_latest_falls_back_to_the_one_before_with_one_line(state, tmp_path, capfd):
    tree = state_to_tree(state, jax.random.key(0))
    ckpt = Checkpointer(tmp_path, max_to_keep=3)
    ckpt.save(1, _shifted(tree, 1), {"s": 1})
    ckpt.save(2, _shifted(tree, 2), {"s": 2})
    # damage every file of the latest checkpoint's state
    for root, _, files in os.walk(tmp_path / "2" / "state"):
        for f in files:
            with open(os.path.join(root, f), "wb") as fh:
                fh.write(b"\x00garbage")
    capfd.readouterr()
    step, restored, meta = Checkpointer(tmp_path).restore_latest(tree)
    assert step == 1 and meta == {"s": 1}
    _assert_tree_equal(restored, _shifted(tree, 1))
    skipped, moved = capfd.readouterr().err.strip().splitlines()  # no traceback
    assert "checkpoint at step 2" in skipped and "could not be restored" in skipped
    assert "moved the unreadable checkpoint 2 to" in moved
    assert sorted(os.listdir(tmp_path)) == ["1"]
    (kept,) = os.listdir(tmp_path.parent / f"{tmp_path.name}.unreadable")
    assert kept.startswith("2-")
    ckpt = Checkpointer(tmp_path, max_to_keep=3)
    ckpt.save(2, _shifted(tree, 2), {"s": 2})  # the run goes on and saves step 2 again
    assert ckpt.all_steps() == [1, 2]


def test_a_partial_save_is_invisible_and_removed_at_the_next_start(state, tmp_path, capfd):
    tree = state_to_tree(state, jax.random.key(0))
    ckpt = Checkpointer(tmp_path, max_to_keep=3)
    ckpt.save(1, tree, {"s": 1})
    # a save killed half-way leaves only Orbax's temporary directory behind
    shutil.copytree(tmp_path / "1", tmp_path / "5.orbax-checkpoint-tmp-123")
    capfd.readouterr()
    step, _, meta = Checkpointer(tmp_path).restore_latest(tree)
    assert step == 1 and meta == {"s": 1}
    assert sorted(os.listdir(tmp_path)) == ["1"]
    (line,) = capfd.readouterr().err.strip().splitlines()
    assert "5.orbax-checkpoint-tmp-123" in line and "did not complete" in line
    Checkpointer(tmp_path).save(5, tree, {"s": 5})  # the step can be saved again


def test_a_failed_save_leaves_nothing_behind(state, tmp_path, monkeypatch):
    """As on a full disk: the write fails after Orbax created its temporary directory."""
    tree = state_to_tree(state, jax.random.key(0))
    ckpt = Checkpointer(tmp_path, max_to_keep=3)
    ckpt.save(1, tree, {"s": 1})

    def full_disk(step, args, force):
        (tmp_path / f"{step}.orbax-checkpoint-tmp-9").mkdir()
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(ckpt.manager, "save", full_disk)
    with pytest.raises(CheckpointError, match="step 2 .*No space left on device"):
        ckpt.save(2, tree, {"s": 2})
    assert sorted(os.listdir(tmp_path)) == ["1"]
    assert Checkpointer(tmp_path).restore_latest(tree)[0] == 1


def test_non_finite_state_is_not_saved(state, tmp_path):
    tree = state_to_tree(state, jax.random.key(0))
    bad = jax.tree.map(lambda x: x, tree)
    first = jax.tree.leaves(bad["params"])[0]
    bad["params"] = jax.tree.map(
        lambda x: x.at[(0,) * x.ndim].set(jnp.nan) if x is first else x, bad["params"]
    )
    ckpt = Checkpointer(tmp_path)
    with pytest.raises(NonFiniteStateError, match="step 3"):
        ckpt.save(3, bad, {})
    assert ckpt.all_steps() == [] and os.listdir(tmp_path) == []
    assert all_finite(tree) and not all_finite(bad)
    assert not all_finite({"x": jnp.array([1.0, jnp.inf])}) and all_finite({"i": jnp.arange(3)})


def test_keep_zero_is_refused(tmp_path):
    with pytest.raises(ValueError, match="max_to_keep must be an integer >= 1, got 0"):
        Checkpointer(tmp_path, max_to_keep=0)


def test_empty_directory_restores_nothing(state, tmp_path):
    assert Checkpointer(tmp_path).restore_latest(state_to_tree(state, jax.random.key(0))) is None


# -- another device count ---------------------------------------------------------------------

_ON_ONE_DEVICE = """
import os, sys
os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=1"
import jax, jax.numpy as jnp, numpy as np
from mlf_jax.train.checkpoint import Checkpointer
ckpt = Checkpointer(sys.argv[2])
if sys.argv[1] == "save":
    ckpt.save(3, {"w": jnp.arange(6.0).reshape(2, 3), "rng": np.arange(2, dtype=np.uint32)}, {})
else:
    step, tree, _ = ckpt.restore_latest({"w": jnp.zeros((2, 3)), "rng": np.zeros(2, np.uint32)})
    assert step == 3 and jax.device_count() == 1, (step, jax.device_count())
    assert isinstance(tree["rng"], np.ndarray), type(tree["rng"])
    print(np.asarray(tree["w"]).tolist(), tree["rng"].tolist())
"""


def _one_device(tmp_path, *args):
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    env = {**os.environ, "PYTHONPATH": str(root)}
    done = subprocess.run(
        [sys.executable, "-c", _ON_ONE_DEVICE, *args],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def _replicated_on_two():
    from jax.sharding import Mesh, NamedSharding, PartitionSpec

    mesh = Mesh(np.array(jax.devices()[:2]), ("d",))
    return NamedSharding(mesh, PartitionSpec())


@pytest.mark.skipif(jax.device_count() < 2, reason="needs 2 devices")
def test_a_checkpoint_of_two_devices_resumes_on_one(tmp_path):
    tree = {
        "w": jax.device_put(jnp.arange(6.0).reshape(2, 3) + 1, _replicated_on_two()),
        "rng": np.array([7, 8], np.uint32),
    }
    Checkpointer(tmp_path / "ckpt").save(3, tree, {})
    out = _one_device(tmp_path, "restore", str(tmp_path / "ckpt"))
    assert out.strip() == "[[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]] [7, 8]"


@pytest.mark.skipif(jax.device_count() < 2, reason="needs 2 devices")
def test_a_checkpoint_of_one_device_resumes_on_two_in_their_sharding(tmp_path):
    _one_device(tmp_path, "save", str(tmp_path / "ckpt"))
    sharding = _replicated_on_two()
    like = {"w": jax.device_put(jnp.zeros((2, 3)), sharding), "rng": np.zeros(2, np.uint32)}
    step, tree, _ = Checkpointer(tmp_path / "ckpt").restore_latest(like)
    assert step == 3 and tree["w"].sharding == sharding
    np.testing.assert_array_equal(np.asarray(tree["w"]), np.arange(6.0).reshape(2, 3))
    np.testing.assert_array_equal(tree["rng"], [0, 1])


# -- a failed save says it once ---------------------------------------------------------------


class _LoopEcho:
    """Collected, raises what a failed save's background write raises when it calls back
    into the save's closed event loop."""

    def __del__(self):
        raise RuntimeError("Event loop is closed")


class _OtherError:
    def __del__(self):
        raise ValueError("not an echo of a failed save")


def _unretrieved_task_error():
    """A task whose exception nobody retrieves: asyncio logs it when the task is collected."""
    import asyncio
    import gc

    async def write():
        raise OSError(28, "No space left on device")

    loop = asyncio.new_event_loop()
    task = loop.create_task(write())
    loop.run_until_complete(asyncio.sleep(0.01))
    loop.close()
    del task
    gc.collect()


def test_a_failed_save_echoes_nothing_but_other_errors_still_show(
    state, tmp_path, monkeypatch, caplog
):
    import logging
    import sys

    seen = []
    monkeypatch.setattr(sys, "unraisablehook", lambda u: seen.append(str(u.exc_value)))
    for name in ("asyncio", "absl"):  # the filters a failed save adds go with the test
        logger = logging.getLogger(name)
        monkeypatch.setattr(logger, "filters", list(logger.filters))
    ckpt = Checkpointer(tmp_path / "ckpt")

    def full_disk(*args, **kwargs):  # the writes fail, echo into the closed loop, then raise
        _LoopEcho()
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(ckpt.manager, "save", full_disk)
    with pytest.raises(CheckpointError, match=r"step 1 .*\(OSError: \[Errno 28\] No space left"):
        ckpt.save(1, state_to_tree(state, jax.random.key(0)), {})
    _LoopEcho()  # stragglers after the error
    with caplog.at_level(logging.ERROR, logger="asyncio"):
        _unretrieved_task_error()
    _OtherError()
    assert seen == ["not an echo of a failed save"]
    assert "Task exception was never retrieved" not in caplog.text
    with caplog.at_level(logging.ERROR):  # Orbax's threads log their copy: dropped
        for path in ("/site-packages/orbax/checkpoint/future.py", "/elsewhere/mine.py"):
            record = {"name": "absl", "levelno": logging.ERROR, "levelname": "ERROR"}
            logging.getLogger("absl").handle(
                logging.makeLogRecord({**record, "pathname": path, "msg": f"raised in {path}"})
            )
    assert "raised in /elsewhere/mine.py" in caplog.text and "orbax" not in caplog.text


def test_a_successful_save_leaves_the_unraisable_hook_as_it_was(state, tmp_path, monkeypatch):
    import sys

    seen = []
    monkeypatch.setattr(sys, "unraisablehook", lambda u: seen.append(u))
    before = sys.unraisablehook
    Checkpointer(tmp_path / "ckpt").save(1, state_to_tree(state, jax.random.key(0)), {})
    assert sys.unraisablehook is before


# -- corruption and the caller's meta -------------------------------------------------------------


def _flip_bytes_of_the_largest_data_file(checkpoint):
    """XORs three bytes in the middle of the largest data file of ``checkpoint``'s state:
    ``state/d/`` holds the arrays' bytes once a save is complete (the ``ocdbt.process_<i>``
    folders hold each process's copy before the merge, no longer read)."""
    data = checkpoint / "state" / "d"
    files = [data / f for f in os.listdir(data)]
    largest = max(files, key=os.path.getsize)
    with open(largest, "r+b") as fh:
        data = bytearray(fh.read())
        middle = len(data) // 2
        for i in range(middle, middle + 3):
            data[i] ^= 0xFF
        fh.seek(0)
        fh.write(data)


def test_flipped_bytes_in_the_newest_checkpoint_are_noticed(state, tmp_path, capfd):
    tree = state_to_tree(state, jax.random.key(0))
    ckpt = Checkpointer(tmp_path, max_to_keep=3)
    ckpt.save(1, _shifted(tree, 1), {"s": 1})
    ckpt.save(2, _shifted(tree, 2), {"s": 2})
    _flip_bytes_of_the_largest_data_file(tmp_path / "2")
    capfd.readouterr()
    step, restored, meta = Checkpointer(tmp_path).restore_latest(tree)
    assert step == 1 and meta == {"s": 1}
    _assert_tree_equal(restored, _shifted(tree, 1))
    skipped, moved = capfd.readouterr().err.strip().splitlines()
    assert "checkpoint at step 2" in skipped and "could not be restored" in skipped
    assert "moved the unreadable checkpoint 2" in moved


def test_the_fingerprint_sees_one_flipped_bit_in_any_leaf_and_dtype():
    tree = {
        "f32": jnp.linspace(-1, 1, 1000, dtype=jnp.float32),
        "bf16": jnp.linspace(-1, 1, 10, dtype=jnp.bfloat16),
        "u32": jnp.arange(7, dtype=jnp.uint32),
        "i8": jnp.arange(5, dtype=jnp.int8),
        "flag": jnp.array([True, False]),
        "key": np.arange(2, dtype=np.uint32),
    }
    from mlf_jax.train.checkpoint import fingerprint

    before = fingerprint(tree)
    for name, leaf in tree.items():
        raw = np.array(leaf).view(np.uint8).copy() if name != "flag" else None
        if raw is None:
            changed = np.array([False, False])
        else:
            raw[len(raw) // 2] ^= 0x10
            changed = raw.view(np.asarray(leaf).dtype).reshape(np.shape(leaf))
        after = fingerprint({**tree, name: changed})
        i = sorted(tree).index(name)  # leaves in key order
        assert after[i] != before[i] and after[:i] + after[i + 1 :] == before[:i] + before[i + 1 :]


def test_a_checkpoint_without_a_fingerprint_still_restores(state, tmp_path, monkeypatch):
    """Checkpoints written before fingerprints were recorded resume as before."""
    import mlf_jax.train.checkpoint as checkpoint

    tree = state_to_tree(state, jax.random.key(0))
    ckpt = Checkpointer(tmp_path)
    with monkeypatch.context() as m:
        m.setattr(checkpoint, "FINGERPRINT_KEY", "not_the_fingerprint")
        ckpt.save(3, tree, {"s": 3})
    step, restored, meta = Checkpointer(tmp_path).restore_latest(tree)
    assert step == 3 and meta == {"s": 3, "not_the_fingerprint": meta["not_the_fingerprint"]}
    _assert_tree_equal(restored, tree)


@pytest.mark.parametrize(
    "bad_meta", [{"s": 2}, {"data": 5}], ids=["missing_field", "malformed_field"]
)
def test_meta_the_caller_cannot_read_is_skipped_like_an_unreadable_checkpoint(
    state, tmp_path, capfd, bad_meta
):
    def check(meta):
        if not isinstance(meta["data"], str):
            raise TypeError("data is not a string")

    tree = state_to_tree(state, jax.random.key(0))
    ckpt = Checkpointer(tmp_path)
    ckpt.save(1, _shifted(tree, 1), {"data": "one"})
    ckpt.save(2, _shifted(tree, 2), bad_meta)
    capfd.readouterr()
    step, restored, meta = Checkpointer(tmp_path).restore_latest(tree, check_meta=check)
    assert step == 1 and meta == {"data": "one"}
    _assert_tree_equal(restored, _shifted(tree, 1))
    skipped, _ = capfd.readouterr().err.strip().splitlines()
    assert "checkpoint at step 2" in skipped
    assert ("KeyError: 'data'" if "s" in bad_meta else "TypeError: data is not") in skipped
    Checkpointer(tmp_path / "only").save(1, tree, bad_meta)
    with pytest.raises(CheckpointError, match=r"none of the checkpoints .*\[1\]"):
        Checkpointer(tmp_path / "only").restore_latest(tree, check_meta=check)


def test_a_well_formed_state_that_is_not_the_one_saved_is_noticed(state, tmp_path, capfd):
    """Corruption that leaves valid files (what Orbax and TensorStore cannot see): the
    newest checkpoint's arrays replaced by other values of the same shapes, its meta kept.
    Only the fingerprint tells; the one before is restored."""
    tree = state_to_tree(state, jax.random.key(0))
    ckpt = Checkpointer(tmp_path / "run")
    ckpt.save(1, _shifted(tree, 1), {"s": 1})
    ckpt.save(2, _shifted(tree, 2), {"s": 2})
    Checkpointer(tmp_path / "other").save(2, _shifted(tree, 7), {"s": 2})
    shutil.rmtree(tmp_path / "run" / "2" / "state")
    shutil.copytree(tmp_path / "other" / "2" / "state", tmp_path / "run" / "2" / "state")
    capfd.readouterr()
    step, restored, _ = Checkpointer(tmp_path / "run").restore_latest(tree)
    assert step == 1
    _assert_tree_equal(restored, _shifted(tree, 1))
    skipped, _ = capfd.readouterr().err.strip().splitlines()
    assert "checkpoint at step 2" in skipped and "fail their fingerprint" in skipped


def test_a_failed_save_removes_what_its_writers_add_after_the_error(state, tmp_path, monkeypatch):
    """The save's error comes first and a writer thread creates its folder after it: the
    folder is still removed by the failed save itself, not left for the next start."""
    import threading
    import time

    tree = state_to_tree(state, jax.random.key(0))
    ckpt = Checkpointer(tmp_path, max_to_keep=3)

    def full_disk(step, args, force):
        def late_writer():
            time.sleep(0.2)
            (tmp_path / f"{step}.orbax-checkpoint-tmp" / "state").mkdir(parents=True)

        threading.Thread(target=late_writer).start()
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(ckpt.manager, "save", full_disk)
    with pytest.raises(CheckpointError, match="step 4 .*No space left on device"):
        ckpt.save(4, tree, {})
    time.sleep(0.5)  # the late writer has long been done
    assert os.listdir(tmp_path) == []
