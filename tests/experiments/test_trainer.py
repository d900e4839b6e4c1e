"""The experiments' training loop on a tiny separable problem: learning, metrics, NaN,
stop signals, resume, run identity, unreadable checkpoints, locking."""

import functools
import json
import os
import shutil
import signal

import jax
import numpy as np
import optax
import pytest

import mlf_jax as mj
from experiments import config_check, input_pipeline, run_identity, trainer
from experiments.configs import digits as digits_config
from mlf_jax.data import ArraySource
from mlf_jax.data.loader import make_loader
from mlf_jax.train.checkpoint import Checkpointer

from ..ds_resnet8_layers import DS_RESNET8_NEURONS
from ..train.test_metrics import _events


def _config(**kw):
    c = digits_config.get_config()
    c.model.widths = (4, 4, 4)
    c.model.time_steps = 2
    c.update(
        dict(
            batch_size=16, eval_batch_size=24, num_epochs=3, learning_rate=0.05,
            schedule="constant", log_every=2, keep_checkpoints=3, checkpoint_every_steps=0,
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


def _data(n_train=96, n_test=40, preprocess=_identity):
    return input_pipeline.Data(_source(n_train, 0), _source(n_test, 1), preprocess)


@pytest.fixture(scope="module")
def model():
    return mj.models.resnet(
        8, widths=(4, 4, 4), num_classes=2, time_steps=2, in_channels=1, axis_name=mj.train.AXIS
    )


def _fit(model, config, workdir, data=None, **kw):
    return trainer.train_and_evaluate(
        config, workdir, data=data if data is not None else _data(), model=model, **kw
    )


def _records(workdir, kind=None):
    return [r for r in mj.train.read_metrics(workdir) if kind is None or r["kind"] == kind]


def _assert_params_equal(a, b):
    jax.tree.map(
        lambda x, y: np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=1e-6, atol=1e-7),
        jax.device_get(a),
        jax.device_get(b),
    )


def test_learns_and_writes_metrics_results_and_the_config(model, tmp_path):
    out = _fit(model, _config(), tmp_path)
    evals = _records(tmp_path, "eval")
    assert [r["epoch"] for r in evals] == [1, 2, 3]
    assert evals[-1]["test_accuracy"] == out["final_test_accuracy"]
    assert out["best_test_accuracy"] == max(r["test_accuracy"] for r in evals)
    assert out["final_test_accuracy"] >= 0.9  # separable problem; chance is 0.5
    assert {"loss", "accuracy", "images_per_second", "learning_rate"} <= set(
        _records(tmp_path, "train")[0]
    )
    results = json.loads((tmp_path / trainer.RESULTS).read_text())
    assert results["steps"] == 3 * (96 // 16) and not results["preempted"]
    assert Checkpointer(tmp_path / "checkpoints").all_steps() == [6, 12, 18]
    assert any(f.startswith("events.out.tfevents") for f in os.listdir(tmp_path / "tensorboard"))
    recorded = json.loads((tmp_path / run_identity.CONFIG_FILE).read_text())["config"]
    assert recorded["model.widths"] == [4, 4, 4] and recorded["batch_size"] == 16
    assert not (tmp_path / mj.train.lock.LOCK_NAME).exists()  # released


def test_nan_loss_stops_naming_the_last_finite_checkpoint(model, tmp_path):
    calls = {"n": 0}

    def poisoned_from_step_5(batch, train):
        if train:
            calls["n"] += 1
            if calls["n"] >= 5:
                return {"image": np.full_like(batch["image"], np.nan), "label": batch["label"]}
        return dict(batch)

    config = _config(num_epochs=2, checkpoint_every_steps=2, log_every=1)
    match = r"not finite at step 5 \(epoch 1\).*step 4 in"
    with pytest.raises(trainer.DivergenceError, match=match):
        _fit(model, config, tmp_path, _data(96, 8, poisoned_from_step_5))
    assert Checkpointer(tmp_path / "checkpoints").all_steps() == [2, 4]


def _restored_params(model, workdir, config):
    tx, _ = trainer.make_optimizer(config, 6)
    state = mj.train.create_train_state(
        model, tx, jax.random.key(0), np.zeros((2, 8, 8, 1), np.float32)
    )
    like = mj.train.state_to_tree(state, jax.random.key(0))
    return Checkpointer(workdir / "checkpoints").restore_latest(like)


def test_exploding_parameters_are_never_saved_and_the_advice_works(model, tmp_path):
    """A huge learning rate: the parameters turn non-finite one step before the loss
    does. No saved checkpoint holds a NaN, and the printed way on is accepted."""
    config = _config(num_epochs=2, learning_rate=1e6, checkpoint_every_steps=1, log_every=1)
    with pytest.raises(trainer.DivergenceError) as err:
        _fit(model, config, tmp_path)
    steps = Checkpointer(tmp_path / "checkpoints").all_steps()
    assert steps, "expected a few finite checkpoints before the divergence"
    assert f"last finite checkpoint is step {steps[-1]}" in str(err.value)
    step, tree, _ = _restored_params(model, tmp_path, config)
    assert step == steps[-1] and mj.train.all_finite(tree)
    # the advice: a new workdir with a lower learning rate, or (accepted, though it does
    # not help after a blow-up like this one) going on with --allow_change=learning_rate
    assert "new --workdir with --config.learning_rate below 1e+06" in str(err.value)
    fresh = _fit(model, _config(learning_rate=0.05), tmp_path / "fresh")
    assert fresh["steps"] == 18 and fresh["final_test_accuracy"] >= 0.9
    lower = _config(num_epochs=2, learning_rate=1e-4, checkpoint_every_steps=1, log_every=1)
    with pytest.raises(trainer.DivergenceError, match=f"step {steps[-1] + 1} "):
        _fit(model, lower, tmp_path, allow_change=("learning_rate",))
    history = json.loads((tmp_path / run_identity.CONFIG_FILE).read_text())["history"]
    assert history[-1]["changed"]["learning_rate"] == [1e6, 1e-4]


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_stop_signal_saves_and_a_restart_ends_like_an_uninterrupted_run(model, tmp_path, sig):
    config = _config(num_epochs=2, log_every=1)
    data = _data(64, 16)
    full = _fit(model, config, tmp_path / "full", data)

    calls = {"n": 0}

    def signalled_at_step_3(batch, train):
        if train:
            calls["n"] += 1
            if calls["n"] == 3:
                os.kill(os.getpid(), sig)
        return dict(batch)

    part = _fit(model, config, tmp_path / "run", _data(64, 16, signalled_at_step_3))
    assert part["preempted"] and part["steps"] == 3
    assert part["stopped_by"] == signal.Signals(sig).name
    assert Checkpointer(tmp_path / "run" / "checkpoints").all_steps() == [3]
    resumed = _fit(model, config, tmp_path / "run", data)
    assert resumed["steps"] == 8 and not resumed["preempted"]
    _assert_params_equal(resumed["state"].params, full["state"].params)
    assert resumed["final_test_accuracy"] == full["final_test_accuracy"]
    steps = [(r["kind"], r["step"]) for r in _records(tmp_path / "run")]
    assert len(steps) == len(set(steps))


@pytest.fixture(scope="module")
def one_epoch_run(model, tmp_path_factory):
    """A finished 1-epoch run, copied by the tests that restart it."""
    workdir = tmp_path_factory.mktemp("one_epoch")
    _fit(model, _config(num_epochs=1), workdir)
    return workdir


def _copy(run, tmp_path):
    shutil.copytree(run, tmp_path / "run")
    return tmp_path / "run"


@pytest.mark.parametrize(
    "change",
    [
        {"model.widths": (4, 4, 8)},
        {"model.depth": 14},
        {"batch_size": 32},
        {"model.time_steps": 1},
        {"model.thresholds": (0.5,)},
        {"seed": 1},
    ],
)
def test_a_restart_with_another_config_is_refused_and_deletes_nothing(
    model, one_epoch_run, tmp_path, change
):
    workdir = _copy(one_epoch_run, tmp_path)
    before = sorted(os.listdir(workdir / "checkpoints"))
    other = _config(num_epochs=1)
    for key, value in change.items():
        node, leaf = (other.model, key.split(".")[1]) if "." in key else (other, key)
        node[leaf] = value
    key = next(iter(change))
    with pytest.raises(run_identity.ConfigMismatchError, match=f"differing keys: {key}") as e:
        _fit(model, other, workdir)
    assert "new --workdir" in str(e.value)
    assert sorted(os.listdir(workdir / "checkpoints")) == before


def test_operational_keys_may_change_on_a_restart(model, one_epoch_run, tmp_path):
    workdir = _copy(one_epoch_run, tmp_path)
    out = _fit(model, _config(num_epochs=1, log_every=3, eval_batch_size=8), workdir)
    assert out["steps"] == 6


def test_extending_num_epochs_continues_the_same_trajectory(model, one_epoch_run, tmp_path):
    full = _fit(model, _config(num_epochs=2), tmp_path / "full")
    workdir = _copy(one_epoch_run, tmp_path)
    with pytest.raises(run_identity.ConfigMismatchError, match="--allow_change=num_epochs"):
        _fit(model, _config(num_epochs=2), workdir)
    extended = _fit(model, _config(num_epochs=2), workdir, allow_change=("num_epochs",))
    assert extended["steps"] == 12
    _assert_params_equal(extended["state"].params, full["state"].params)


def test_allow_change_refuses_model_keys(model, tmp_path):
    with pytest.raises(run_identity.ConfigMismatchError, match="accepts only"):
        _fit(model, _config(), tmp_path, allow_change=("model.depth",))


def test_resume_drops_metrics_written_after_the_checkpoint(model, tmp_path):
    """As after a SIGKILL: the run logged steps that no checkpoint holds."""
    config = _config(num_epochs=1, checkpoint_every_steps=2, log_every=1)
    _fit(model, config, tmp_path)
    for step in ("6", "4"):  # as if killed after logging step 6 with step 2 the last checkpoint
        shutil.rmtree(tmp_path / "checkpoints" / step)
    (tmp_path / trainer.RESULTS).unlink()
    out = _fit(model, config, tmp_path)
    assert out["steps"] == 6
    train_steps = [r["step"] for r in _records(tmp_path, "train")]
    assert train_steps == [1, 2, 3, 4, 5, 6]


def test_every_checkpoint_unreadable_stops_instead_of_starting_over(model, tmp_path, capfd):
    config = _config(num_epochs=1, checkpoint_every_steps=3)
    _fit(model, config, tmp_path)
    ckpts = tmp_path / "checkpoints"
    for root, _, files in os.walk(ckpts):
        for f in files:
            if "state" in root:
                with open(os.path.join(root, f), "wb") as fh:
                    fh.write(b"\x00garbage")
    capfd.readouterr()
    with pytest.raises(mj.train.CheckpointError, match=r"none of the checkpoints .* \[3, 6\]"):
        _fit(model, config, tmp_path)
    assert sorted(p for p in os.listdir(ckpts) if p.isdigit()) == ["3", "6"]
    err = capfd.readouterr().err.strip().splitlines()
    assert len(err) == 2 and all("could not be restored" in x for x in err), err


def test_a_second_run_on_the_same_workdir_is_refused(model, tmp_path):
    with mj.train.RunLock(tmp_path):
        with pytest.raises(mj.train.LockedError, match=f"process {os.getpid()}"):
            _fit(model, _config(num_epochs=1), tmp_path)
    assert not (tmp_path / "checkpoints").exists()


def test_batch_not_divisible_by_the_device_count_names_the_nearest(model, tmp_path):
    if jax.device_count() != 2:
        pytest.skip("needs exactly 2 devices (tests/conftest.py sets them)")
    with pytest.raises(config_check.ConfigError, match="nearest valid sizes: 14 or 16"):
        _fit(model, _config(batch_size=15), tmp_path)


def test_evaluation_batch_need_not_divide_by_the_devices(model, tmp_path):
    out = _fit(model, _config(num_epochs=1, eval_batch_size=7), tmp_path, _data(64, 10))
    assert out["steps"] == 4 and 0.0 <= out["final_test_accuracy"] <= 1.0


def test_pmap_mode_trains_too(model, tmp_path):
    out = _fit(model, _config(num_epochs=1, parallel="pmap"), tmp_path, _data(64, 16))
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


def test_profile_steps_write_a_trace_into_tensorboard(model, tmp_path):
    out = _fit(model, _config(num_epochs=1, profile_steps=(2, 3)), tmp_path, _data(64, 16))
    assert out["steps"] == 4
    traces = list((tmp_path / "tensorboard" / "plugins" / "profile").glob("*/*.xplane.pb"))
    assert len(traces) == 1 and traces[0].stat().st_size > 1000


def test_a_relative_workdir_saves_its_checkpoints(model, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    out = _fit(model, _config(num_epochs=1), "runs/rel", _data(64, 16))
    assert out["steps"] == 4
    assert Checkpointer(tmp_path / "runs" / "rel" / "checkpoints").all_steps() == [4]
    with pytest.raises(config_check.ConfigError, match="--workdir must name a directory"):
        _fit(model, _config(num_epochs=1), "", _data(64, 16))


def test_a_start_that_fails_on_its_data_leaves_the_workdir_free(model, tmp_path):
    with pytest.raises(config_check.ConfigError, match="exceeds the training set"):
        _fit(model, _config(num_epochs=1, batch_size=128), tmp_path, _data(64, 16))
    assert not (tmp_path / run_identity.CONFIG_FILE).exists()
    out = _fit(model, _config(num_epochs=1), tmp_path, _data(64, 16))  # the corrected command
    assert out["steps"] == 4


def test_without_checkpoints_a_new_config_takes_the_workdir_over(model, tmp_path):
    """A run killed before its first checkpoint: no work to mix, nothing logged twice."""
    run_identity.record(tmp_path, _config(num_epochs=1, seed=5))
    mj.train.MetricsWriter(tmp_path).write(2, "train", {"loss": 9.0})
    out = _fit(model, _config(num_epochs=1, log_every=1), tmp_path, _data(64, 16))
    assert out["steps"] == 4
    assert [r["step"] for r in _records(tmp_path, "train")] == [1, 2, 3, 4]
    recorded = json.loads((tmp_path / run_identity.CONFIG_FILE).read_text())
    assert recorded["config"]["seed"] == 0


def test_unreadable_records_are_named_or_skipped(model, one_epoch_run, tmp_path, capfd):
    workdir = _copy(one_epoch_run, tmp_path)
    (workdir / run_identity.CONFIG_FILE).write_text("{not json")
    with pytest.raises(run_identity.ConfigMismatchError, match="config.json is unreadable"):
        _fit(model, _config(num_epochs=1), workdir)
    shutil.rmtree(workdir)
    workdir = _copy(one_epoch_run, tmp_path)
    with (workdir / "metrics.jsonl").open("a") as f:
        f.write('{"step": 7, "kind": "tr')  # torn by a kill mid-write
    capfd.readouterr()
    _fit(model, _config(num_epochs=2), workdir, allow_change=["num_epochs"])
    assert "dropping unreadable line 5" in capfd.readouterr().err  # after 3 train, 1 eval
    assert max(r["step"] for r in _records(workdir)) == 12


def test_checkpoints_without_their_config_record_are_refused(model, one_epoch_run, tmp_path):
    """The config the checkpoints were trained under is unknown: no resume under another
    one, no new record claiming it, nothing deleted."""
    workdir = _copy(one_epoch_run, tmp_path)
    (workdir / run_identity.CONFIG_FILE).unlink()
    before = sorted(os.listdir(workdir / "checkpoints"))
    with pytest.raises(run_identity.ConfigMismatchError, match="has checkpoints but no config"):
        _fit(model, _config(num_epochs=2, seed=7), workdir)
    assert not (workdir / run_identity.CONFIG_FILE).exists()
    assert sorted(os.listdir(workdir / "checkpoints")) == before


def test_a_finished_run_restarted_keeps_its_results(model, one_epoch_run, tmp_path):
    workdir = _copy(one_epoch_run, tmp_path)
    before = (workdir / trainer.RESULTS).read_text()
    out = _fit(model, _config(num_epochs=1), workdir)
    assert out["steps"] == 6 and (workdir / trainer.RESULTS).read_text() == before


def test_num_epochs_cannot_shrink_below_what_was_trained(model, one_epoch_run, tmp_path):
    workdir = _copy(one_epoch_run, tmp_path)
    _fit(model, _config(num_epochs=2), workdir, allow_change=["num_epochs"])
    with pytest.raises(config_check.ConfigError, match="has trained 12 steps; use num_epochs >= 2"):
        _fit(model, _config(num_epochs=1), workdir, allow_change=["num_epochs"])


def test_a_signal_during_start_up_stops_at_the_first_step(model, tmp_path):
    """SIGTERM (a preemption) during start-up: one step, then a checkpoint; Ctrl-C: the
    user wants it stopped, before any step (``KeyboardInterrupt``), the workdir free."""
    mj.train.preemption.catch_early_signals()
    try:
        os.kill(os.getpid(), signal.SIGTERM)  # as while the data are read
        out = _fit(model, _config(num_epochs=1), tmp_path / "term", _data(64, 16))
        mj.train.preemption.catch_early_signals()  # the run's end restored the defaults
        os.kill(os.getpid(), signal.SIGINT)
        with pytest.raises(KeyboardInterrupt):
            _fit(model, _config(num_epochs=1), tmp_path / "int", _data(64, 16))
    finally:
        mj.train.preemption.restore_default_signals()
    assert out["preempted"] and out["stopped_by"] == "SIGTERM" and out["steps"] == 1
    assert Checkpointer(tmp_path / "term" / "checkpoints").all_steps() == [1]
    assert not (tmp_path / "int" / "checkpoints").exists() or not os.listdir(
        tmp_path / "int" / "checkpoints"
    )
    assert not (tmp_path / "int" / mj.train.lock.LOCK_NAME).exists()


def test_a_run_recorded_before_a_key_was_added_resumes_under_its_old_meaning(tmp_path):
    """``augment`` came after runs were recorded without it: '' (what they did) matches."""
    config = _config()
    run_identity.record(tmp_path, config)
    path = tmp_path / run_identity.CONFIG_FILE
    record = json.loads(path.read_text())
    del record["config"]["augment"]
    path.write_text(json.dumps(record))
    assert run_identity.check(tmp_path, config) == {}
    config.augment = "crop_flip"
    with pytest.raises(run_identity.ConfigMismatchError, match="augment: None -> 'crop_flip'"):
        run_identity.check(tmp_path, config)


# --- Spiking activity in the training loop: per-layer firing rates and dormant fractions in
# metrics.jsonl and TensorBoard, and the firing-rate regulariser from the config.


LAYERS = DS_RESNET8_NEURONS


def _model(axis_name):
    return mj.models.resnet(
        8, widths=(4, 4, 4), num_classes=2, time_steps=2, in_channels=1, axis_name=axis_name
    )


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


def test_activity_logs_know_the_levels_of_every_zoo_neuron():
    from experiments.trainer import _dormancy_constants

    kw = dict(widths=(4, 4, 4), num_classes=3, time_steps=2, in_channels=1)
    alif = mj.zoo.AdaptiveLIF(threshold=0.7, surrogate=mj.triangle(0.5))
    assert _dormancy_constants(mj.models.resnet(8, neuron=alif, **kw)) == ((0.7,), mj.triangle(0.5))
    assert _dormancy_constants(mj.models.resnet(8, **kw)) == ((0.6, 1.6, 2.6), mj.rectangular(1.0))
    # learned thresholds, or a layer factory: rates only
    assert _dormancy_constants(mj.models.resnet(8, learn_thresholds=True, **kw)) == (None, None)
    factory = functools.partial(mj.nn.Neuron, model=alif)
    assert _dormancy_constants(mj.models.resnet(8, neuron=factory, **kw)) == (None, None)


def _spy(monkeypatch, module, name):
    """Counts the calls of ``module.name`` (still called)."""
    calls = []
    real = getattr(module, name)

    def spy(*args, **kw):
        calls.append(args)
        return real(*args, **kw)

    monkeypatch.setattr(module, name, spy)
    return calls


def test_a_run_validates_its_config_once_and_builds_its_model_once(monkeypatch, tmp_path):
    from experiments import models

    validations = _spy(monkeypatch, config_check, "validate")
    builds = _spy(monkeypatch, models, "build_model")
    divisible = _spy(monkeypatch, trainer, "check_divisible")
    out = trainer.train_and_evaluate(_config(num_epochs=1), tmp_path, data=_data())
    assert (len(validations), len(builds), len(divisible)) == (1, 1, 1)
    assert out["steps"] == 96 // 16 and (tmp_path / trainer.FINAL_VARIABLES).exists()


def test_a_checked_config_is_not_validated_again_and_trains_the_model_it_checked(
    monkeypatch, tmp_path
):
    from experiments import models

    checked = config_check.validate(_config(num_epochs=1))
    validations = _spy(monkeypatch, config_check, "validate")
    builds = _spy(monkeypatch, models, "build_model")
    out = trainer.train_and_evaluate(checked, tmp_path, data=_data())
    assert (len(validations), len(builds)) == (0, 0)
    assert out["num_params"] == mj.models.num_params(
        checked.model.init(jax.random.key(0), np.zeros((2, 8, 8, 1), np.float32))["params"]
    )
    with pytest.raises(TypeError, match="carries its model"):
        trainer.train_and_evaluate(checked, tmp_path / "b", data=_data(), model=checked.model)


def test_held_out_validation_and_the_weight_average_are_evaluated_every_epoch(model, tmp_path):
    out = _fit(model, _config(validation_size=24, ema_decay=1e-9), tmp_path)
    evals = _records(tmp_path, "eval")
    keys = {"val_accuracy", "ema_val_accuracy", "ema_test_accuracy", "val_loss", "ema_test_loss"}
    assert all(keys <= set(r) for r in evals)
    assert out["final_val_accuracy"] == evals[-1]["val_accuracy"]
    # decay ~0: the average is the trained weights, so it scores what they score
    for r in evals:
        assert r["ema_test_accuracy"] == r["test_accuracy"]
        assert r["ema_val_accuracy"] == r["val_accuracy"]
        np.testing.assert_allclose(r["ema_test_loss"], r["test_loss"], rtol=1e-5)
    # 96 - 24 training examples: 4 full batches of 16 per epoch
    assert json.loads((tmp_path / trainer.RESULTS).read_text())["steps"] == 3 * (72 // 16)


def test_without_validation_or_average_no_such_metrics(model, tmp_path):
    _fit(model, _config(num_epochs=1), tmp_path)
    (r,) = _records(tmp_path, "eval")
    assert not any(k.startswith(("val_", "ema_")) for k in r)
