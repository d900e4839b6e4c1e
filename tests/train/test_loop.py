"""The training loop on a tiny separable problem: learning, metrics, NaN, SIGTERM, resume."""

import json
import os
import signal

import jax
import ml_collections
import numpy as np
import pytest

import mlf_jax as mj
from mlf_jax.data import ArraySource
from mlf_jax.train.checkpoint import Checkpointer


def _config(**kw):
    c = ml_collections.ConfigDict(
        dict(
            seed=0, batch_size=16, eval_batch_size=24, num_epochs=3, learning_rate=0.05,
            momentum=0.9, weight_decay=1e-4, schedule="constant", lr_decay_epochs=40,
            lr_decay_factor=0.1, warmup_epochs=0.0, log_every=2, parallel="shard_map",
            keep_checkpoints=3, checkpoint_every_steps=0,
        )
    )  # fmt: skip
    c.update(kw)
    return c


def _source(n, seed):
    """Class 1: bright left half; class 0: bright right half."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, n).astype(np.int32)
    images = rng.uniform(0, 0.3, (n, 8, 8, 1)).astype(np.float32)
    for i, c in enumerate(labels):
        images[i, :, :4] += 2.0 * c
        images[i, :, 4:] += 2.0 * (1 - c)
    return ArraySource({"image": images, "label": labels})


def _identity(batch, train):
    return dict(batch)


@pytest.fixture(scope="module")
def model():
    return mj.models.resnet(
        8, widths=(4, 4, 4), num_classes=2, time_steps=2, in_channels=1, axis_name=mj.train.AXIS
    )


def _records(workdir, kind):
    lines = [json.loads(x) for x in (workdir / "metrics.jsonl").read_text().splitlines()]
    return [r for r in lines if r["kind"] == kind]


def test_fit_learns_and_writes_metrics(model, tmp_path):
    out = mj.train.fit(model, _source(96, 0), _source(40, 1), _identity, _config(), tmp_path)
    evals = _records(tmp_path, "eval")
    assert [r["epoch"] for r in evals] == [1, 2, 3]
    assert evals[-1]["test_accuracy"] == out["final_test_accuracy"]
    assert out["best_test_accuracy"] == max(r["test_accuracy"] for r in evals)
    assert out["final_test_accuracy"] >= 0.9  # separable problem; chance is 0.5
    assert {"loss", "accuracy", "images_per_second", "learning_rate"} <= set(
        _records(tmp_path, "train")[0]
    )
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["steps"] == 3 * (96 // 16) and not results["preempted"]
    assert Checkpointer(tmp_path / "checkpoints").all_steps() == [6, 12, 18]
    assert any(f.startswith("events.out.tfevents") for f in os.listdir(tmp_path / "tensorboard"))


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(model, tmp_path):
    calls = {"n": 0}

    def poisoned_from_step_5(batch, train):
        if train:
            calls["n"] += 1
            if calls["n"] >= 5:
                return {"image": np.full_like(batch["image"], np.nan), "label": batch["label"]}
        return dict(batch)

    config = _config(num_epochs=2, checkpoint_every_steps=2, log_every=1)
    with pytest.raises(FloatingPointError, match=r"training loss is nan at step 5 \(epoch 1\)"):
        mj.train.fit(model, _source(96, 0), _source(8, 1), poisoned_from_step_5, config, tmp_path)
    ckpt = Checkpointer(tmp_path / "checkpoints")
    assert ckpt.all_steps() == [2, 4]
    tx = mj.train.sgd(mj.train.learning_rate_schedule(0.05, 6, 2, kind="constant"), 0.9, 1e-4)
    state = mj.train.create_train_state(
        model, tx, jax.random.key(0), np.zeros((2, 8, 8, 1), np.float32)
    )
    _, tree, _ = ckpt.restore_latest(mj.train.checkpoint.state_to_tree(state, jax.random.key(0)))
    assert all(np.isfinite(np.asarray(x)).all() for x in jax.tree.leaves(tree["params"]))


def test_sigterm_saves_and_a_restart_ends_like_an_uninterrupted_run(model, tmp_path):
    config = _config(num_epochs=2, log_every=1)
    full = mj.train.fit(model, _source(64, 0), _source(16, 1), _identity, config, tmp_path / "full")

    calls = {"n": 0}

    def terminated_at_step_3(batch, train):
        if train:
            calls["n"] += 1
            if calls["n"] == 3:
                os.kill(os.getpid(), signal.SIGTERM)
        return dict(batch)

    part = mj.train.fit(
        model, _source(64, 0), _source(16, 1), terminated_at_step_3, config, tmp_path / "run"
    )
    assert part["preempted"] and part["steps"] == 3
    assert Checkpointer(tmp_path / "run" / "checkpoints").all_steps() == [3]
    resumed = mj.train.fit(
        model, _source(64, 0), _source(16, 1), _identity, config, tmp_path / "run"
    )
    assert resumed["steps"] == 8 and not resumed["preempted"]
    jax.tree.map(
        lambda a, b: np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-6, atol=1e-7),
        jax.device_get(resumed["state"].params),
        jax.device_get(full["state"].params),
    )
    assert resumed["final_test_accuracy"] == full["final_test_accuracy"]


def test_batch_not_divisible_by_the_device_count(model, tmp_path):
    if jax.device_count() < 2:
        pytest.skip("needs 2 devices")
    with pytest.raises(
        ValueError, match="batch_size 15 is not divisible by the number of devices \\(2\\)"
    ):
        mj.train.fit(
            model, _source(64, 0), _source(16, 1), _identity, _config(batch_size=15), tmp_path
        )


def test_pmap_mode_trains_too(model, tmp_path):
    out = mj.train.fit(
        model,
        _source(64, 0),
        _source(16, 1),
        _identity,
        _config(num_epochs=1, parallel="pmap"),
        tmp_path,
    )
    assert out["steps"] == 4 and 0.0 <= out["final_test_accuracy"] <= 1.0


def test_evaluate_counts_a_padded_last_batch_once(model):
    src = _source(10, 3)
    state = mj.train.create_train_state(
        model, mj.train.sgd(0.1), jax.random.key(0), np.zeros((2, 8, 8, 1), np.float32)
    )
    v = {"params": state.params, "batch_stats": state.batch_stats}
    logits = model.apply(v, src.arrays["image"], train=False)
    expected = float(np.mean(np.argmax(logits, -1) == src.arrays["label"]))
    dp = mj.train.DataParallel("shard_map")
    got = mj.train.evaluate(dp, dp.put_state(state), src, _identity, batch_size=4)  # 4 + 4 + 2
    np.testing.assert_allclose(got["accuracy"], expected)
