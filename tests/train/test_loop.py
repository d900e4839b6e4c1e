"""Train step and loop on a tiny separable problem."""

import json

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

import mlf_jax as mj
from mlf_jax.data import ArraySource


def _config(**kw):
    c = ml_collections.ConfigDict(
        dict(
            seed=0, batch_size=16, eval_batch_size=24, num_epochs=3, learning_rate=0.05,
            momentum=0.9, weight_decay=1e-4, schedule="constant", lr_decay_epochs=40,
            lr_decay_factor=0.1, warmup_epochs=0.0, log_every=2,
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
    return mj.models.resnet(8, widths=(4, 4, 4), num_classes=2, time_steps=2, in_channels=1)


def test_fit_learns_and_writes_metrics(model, tmp_path):
    out = mj.train.fit(model, _source(96, 0), _source(40, 1), _identity, _config(), tmp_path)
    lines = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in lines] == [1, 2, 3]
    assert lines[-1]["test_accuracy"] == out["final_test_accuracy"]
    assert out["final_test_accuracy"] >= 0.9  # separable problem; chance is 0.5
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["steps"] == 3 * (96 // 16)
    assert (tmp_path / "final_variables.msgpack").stat().st_size > 0


def test_nan_loss_stops_training_with_a_clear_message(model, tmp_path):
    def poisoned(batch, train):
        return {"image": np.full_like(batch["image"], np.nan), "label": batch["label"]}

    with pytest.raises(FloatingPointError, match="training loss is nan at epoch 1"):
        mj.train.fit(
            model, _source(32, 0), _source(8, 1), poisoned, _config(num_epochs=1), tmp_path
        )


def test_evaluate_counts_a_padded_last_batch_once(model):
    src = _source(10, 3)
    v = model.init(jax.random.key(0), jnp.zeros((1, 8, 8, 1)), train=False)
    state = mj.train.TrainState.create(
        apply_fn=model.apply, params=v["params"], tx=mj.train.sgd(0.1), batch_stats=v["batch_stats"]
    )
    logits = model.apply(v, src.arrays["image"], train=False)
    expected = float(np.mean(np.argmax(logits, -1) == src.arrays["label"]))
    got = mj.train.evaluate(state, src, _identity, batch_size=4)  # 4 + 4 + 2 (padded)
    np.testing.assert_allclose(got["accuracy"], expected)
