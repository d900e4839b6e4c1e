"""Spiking activity in the training loop: per-layer firing rates and dormant fractions in
metrics.jsonl and TensorBoard, and the firing-rate regulariser from the config."""

import json

import jax
import numpy as np
import optax
import pytest

import mlf_jax as mj
from experiments import run_identity, trainer
from mlf_jax.data.loader import make_loader

from ..train.test_metrics import _events
from .test_trainer import _config, _data

LAYERS = [
    "stem_neuron",
    "stage1_block1/neuron1",
    "stage1_block1/neuron2",
    "stage2_block1/neuron1",
    "stage2_block1/shortcut_neuron",
    "stage2_block1/neuron2",
    "stage3_block1/neuron1",
    "stage3_block1/shortcut_neuron",
    "stage3_block1/neuron2",
]


def _model(axis_name):
    return mj.models.resnet(
        8, widths=(4, 4, 4), num_classes=2, time_steps=2, in_channels=1, axis_name=axis_name
    )


def _records(workdir, kind):
    return [r for r in mj.train.read_metrics(workdir) if r["kind"] == kind]


def _by_hand(records, thresholds=(0.6, 1.6, 2.6), width=1.0):
    """Firing rate and dormant fraction of each recorded layer, in numpy."""
    out = {}
    for name, rec in records.items():
        u = np.asarray(rec.membrane, np.float64)  # [T, K, B, ...]
        th = np.asarray(thresholds).reshape(1, -1, *([1] * (u.ndim - 2)))
        dormant = np.all(np.abs(u - th) >= width / 2, axis=1)  # rectangular: |z| < w/2 passes
        out[f"firing_rate/{name}"] = float(np.asarray(rec.spikes, np.float64).mean())
        out[f"dormant/{name}"] = float(dormant.mean())
    return out


@pytest.fixture(scope="module")
def activity_run(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("activity")
    config = _config(
        num_epochs=1, activity_every_steps=2, firing_rate_reg=0.5, firing_rate_target=0.05
    )
    data = _data()
    trainer.train_and_evaluate(config, workdir, data=data, model=_model(mj.train.AXIS))
    return workdir, config, data


def test_activity_is_written_every_n_steps_for_every_layer(activity_run):
    workdir, config, _ = activity_run
    records = _records(workdir, "activity")
    assert [r["step"] for r in records] == [2, 4, 6]  # 96 examples / 16 = 6 steps
    want = [f"firing_rate/{k}" for k in LAYERS] + [f"dormant/{k}" for k in LAYERS]
    assert all(list(r)[2:] == want for r in records)  # forward order, rates first
    (events_file,) = (workdir / "tensorboard").iterdir()
    tags = {(e.step, v.tag) for e in _events(events_file) for v in e.summary.value}
    assert (4, "activity/firing_rate/stage2_block1/shortcut_neuron") in tags
    assert (6, "activity/dormant/stem_neuron") in tags


def test_activity_equals_an_independent_computation_on_the_same_batch(tmp_path):
    config = _config(num_epochs=1, activity_every_steps=1)
    data = _data()
    trainer.train_and_evaluate(config, tmp_path, data=data, model=_model(mj.train.AXIS))
    first = _records(tmp_path, "activity")[0]
    assert first["step"] == 1

    # step 1 starts from the initial state, on the loader's first batch
    sample = data.preprocess(data.train[np.arange(2)], False)
    model = _model(None)
    state = mj.train.create_train_state(
        model, optax.sgd(0.1), jax.random.key(config.seed), sample["image"]
    )
    loader = make_loader(
        data.train,
        batch_size=config.batch_size,
        shuffle=True,
        seed=config.seed,
        num_epochs=None,
        drop_remainder=True,
        transform=data.augment,
    )
    batch = data.preprocess(next(iter(loader)), True)
    variables = {"params": state.params, "batch_stats": state.batch_stats}
    _, records = mj.analysis.record(model, variables, batch["image"], train=True)
    want = _by_hand(records)
    assert set(want) == set(first) - {"step", "kind"}
    for key, value in want.items():
        np.testing.assert_allclose(first[key], value, rtol=1e-5, atol=1e-7, err_msg=key)


def test_firing_rate_reg_from_the_config_reaches_the_logged_metrics(activity_run):
    workdir, config, _ = activity_run
    train = _records(workdir, "train")
    assert config.firing_rate_reg == 0.5 and len(train) == 3  # log_every = 2
    assert all(r["firing_rate_penalty"] > 0 and 0 < r["firing_rate"] < 3 for r in train)


def test_activity_every_steps_is_operational_and_the_regulariser_is_not(tmp_path):
    config = _config()
    run_identity.record(tmp_path, config)
    path = tmp_path / run_identity.CONFIG_FILE
    record = json.loads(path.read_text())
    for key in ("firing_rate_reg", "firing_rate_target", "activity_every_steps"):
        del record["config"][key]  # a run recorded before the keys existed
    path.write_text(json.dumps(record))
    assert run_identity.check(tmp_path, config) == {}
    config.activity_every_steps = 10
    assert run_identity.check(tmp_path, config) == {}
    config.firing_rate_reg = 0.1
    with pytest.raises(run_identity.ConfigMismatchError, match="firing_rate_reg: None -> 0.1"):
        run_identity.check(tmp_path, config)
