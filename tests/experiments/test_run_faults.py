"""Faults on the path of a run (issue 39): corrupt checkpoints and meta, unreadable
records, exports of unfinished runs, and the hints of the refusals, each followed."""

import hashlib
import json
import os
import shutil
import signal

import jax
import numpy as np
import pytest

import mlf_jax as mj
from experiments import export, input_pipeline, run_identity, trainer
from experiments.configs import digits as digits_config
from experiments.models import build_model
from mlf_jax.data import digits
from mlf_jax.train.checkpoint import Checkpointer

from ..train.test_checkpoint import _flip_bytes_of_the_largest_data_file
from .test_trainer import _assert_params_equal, _config, _data, _fit, _records


@pytest.fixture(scope="module")
def model():
    return mj.models.resnet(
        8, widths=(4, 4, 4), num_classes=2, time_steps=2, in_channels=1, axis_name=mj.train.AXIS
    )


def _stopped_at(step, sig=signal.SIGTERM, n_train=96):
    """Data whose preprocessing sends ``sig`` at the ``step``-th training batch."""
    calls = {"n": 0}

    def preprocess(batch, train):
        if train:
            calls["n"] += 1
            if calls["n"] == step:
                os.kill(os.getpid(), sig)
        return dict(batch)

    return _data(n_train, 40, preprocess)


@pytest.fixture(scope="module")
def interrupted(model, tmp_path_factory):
    """A 2-epoch run stopped at step 5 (checkpoints at 3 and 5), and the same run
    uninterrupted."""
    tmp = tmp_path_factory.mktemp("interrupted")
    config = _config(num_epochs=2, checkpoint_every_steps=3)
    full = _fit(model, config, tmp / "full")
    part = _fit(model, config, tmp / "run", _stopped_at(5))
    assert part["preempted"] and Checkpointer(tmp / "run" / "checkpoints").all_steps() == [3, 5]
    return {"config": config, "full": full, "run": tmp / "run"}


def _copy(run, tmp_path):
    shutil.copytree(run, tmp_path / "run")
    return tmp_path / "run"


def _notices(err):
    return [x for x in err.strip().splitlines() if x.startswith("mlf_jax:")]


def test_flipped_bytes_in_the_newest_checkpoint_resume_from_the_one_before(
    model, interrupted, tmp_path, capfd
):
    workdir = _copy(interrupted["run"], tmp_path)
    _flip_bytes_of_the_largest_data_file(workdir / "checkpoints" / "5")
    capfd.readouterr()
    out = _fit(model, interrupted["config"], workdir)
    captured = capfd.readouterr()
    err = captured.err + captured.out
    skipped, moved = _notices(err)
    assert "checkpoint at step 5" in skipped and "could not be restored" in skipped
    assert "fingerprint" in skipped or "Error" in skipped
    assert "moved the unreadable checkpoint 5" in moved
    assert "resumed from checkpoint at step 3" in err and "Traceback" not in err
    assert out["steps"] == 12 and not out["preempted"]
    _assert_params_equal(out["state"].params, interrupted["full"]["state"].params)


def _rewrite_meta(checkpoint, change):
    path = checkpoint / "meta" / "metadata"
    meta = json.loads(path.read_text())
    change(meta)
    path.write_text(json.dumps(meta))


@pytest.mark.parametrize(
    "change, why",
    [
        (lambda m: m.pop("data"), "KeyError: 'data'"),
        (lambda m: m.update(data=[1, 2]), "TypeError: meta 'data' is a list"),
        (lambda m: m.update(device_counts="2"), "TypeError: meta 'device_counts'"),
        (lambda m: m.update(last_eval={"epoch": 1}), "TypeError: meta 'last_eval'"),
    ],
    ids=["no_data", "data_a_list", "counts_a_string", "last_eval_without_accuracy"],
)
def test_a_newest_meta_without_a_field_the_trainer_reads_falls_back(
    model, interrupted, tmp_path, capfd, change, why
):
    workdir = _copy(interrupted["run"], tmp_path)
    _rewrite_meta(workdir / "checkpoints" / "5", change)
    capfd.readouterr()
    out = _fit(model, interrupted["config"], workdir)
    captured = capfd.readouterr()
    err = captured.err + captured.out
    skipped, _ = _notices(err)
    assert "checkpoint at step 5" in skipped and why in skipped, skipped
    assert "resumed from checkpoint at step 3" in err and "Traceback" not in err
    _assert_params_equal(out["state"].params, interrupted["full"]["state"].params)


def test_non_utf8_bytes_in_metrics_are_dropped_with_a_notice(model, interrupted, tmp_path, capfd):
    workdir = _copy(interrupted["run"], tmp_path)
    with (workdir / "metrics.jsonl").open("ab") as f:
        f.write(b'{"step": 6, "kind": "train", "loss": \xff\xfe}\n')
    capfd.readouterr()
    out = _fit(model, interrupted["config"], workdir)
    assert "dropping unreadable line" in capfd.readouterr().err
    assert out["steps"] == 12
    steps = [(r["kind"], r["step"]) for r in _records(workdir)]
    assert len(steps) == len(set(steps)) and max(s for _, s in steps) == 12


# -- the hints lead somewhere -------------------------------------------------------------


def test_an_unreadable_config_record_hints_what_works(model, interrupted, tmp_path):
    """With checkpoints, moving the record away would be refused: the hint says restore
    it or use a new workdir, and both work. Without, moving it away works."""
    workdir = _copy(interrupted["run"], tmp_path)
    record = workdir / run_identity.CONFIG_FILE
    good = record.read_bytes()
    record.write_bytes(b"\xff{not json")
    config = interrupted["config"]
    with pytest.raises(run_identity.ConfigMismatchError) as e:
        _fit(model, config, workdir)
    message = str(e.value)
    assert "config.json is unreadable" in message and "move it away" not in message
    assert "restore it (from a copy of the run)" in message and "new --workdir" in message
    assert _fit(model, config, tmp_path / "new")["steps"] == 12  # a new --workdir
    record.write_bytes(good)  # restored
    assert _fit(model, config, workdir)["steps"] == 12

    fresh = tmp_path / "fresh"  # no checkpoints: moving it away records this config
    fresh.mkdir()
    (fresh / run_identity.CONFIG_FILE).write_text("{not json")
    with pytest.raises(run_identity.ConfigMismatchError, match="move it away") as e:
        _fit(model, config, fresh)
    (fresh / run_identity.CONFIG_FILE).rename(tmp_path / "moved.json")
    assert _fit(model, config, fresh)["steps"] == 12


def test_every_checkpoint_unreadable_hint_moves_them_away_and_the_run_starts_over(
    model, interrupted, tmp_path
):
    workdir = _copy(interrupted["run"], tmp_path)
    for step in ("3", "5"):
        _flip_bytes_of_the_largest_data_file(workdir / "checkpoints" / step)
    with pytest.raises(mj.train.CheckpointError, match="Move them away to start over") as e:
        _fit(model, interrupted["config"], workdir)
    assert str(e.value).count("\n") == 0
    (workdir / "checkpoints").rename(tmp_path / "kept")  # as the hint says
    out = _fit(model, interrupted["config"], workdir)
    assert out["steps"] == 12
    _assert_params_equal(out["state"].params, interrupted["full"]["state"].params)


def test_final_variables_are_written_before_results_and_while_the_lock_is_held(
    model, tmp_path, monkeypatch
):
    seen = []
    real = mj.train.write_atomically

    def spy(path, data):
        seen.append((os.path.basename(path), (tmp_path / mj.train.lock.LOCK_NAME).exists()))
        real(path, data)

    monkeypatch.setattr(mj.train, "write_atomically", spy)
    _fit(model, _config(num_epochs=1), tmp_path)
    finals = [x for x in seen if x[0] in (trainer.FINAL_VARIABLES, trainer.RESULTS)]
    assert finals == [(trainer.FINAL_VARIABLES, True), (trainer.RESULTS, True)]
    results = json.loads((tmp_path / trainer.RESULTS).read_text())
    raw = (tmp_path / trainer.FINAL_VARIABLES).read_bytes()
    assert results[trainer.FINAL_SHA256] == hashlib.sha256(raw).hexdigest()


# -- exports of what finished -------------------------------------------------------------


def _digits_config(num_epochs):
    config = digits_config.get_config()
    config.model.widths = (4, 8, 8)
    config.model.time_steps = 1
    config.batch_size = 64
    config.eval_batch_size = 120
    config.num_epochs = num_epochs
    config.log_every = 11
    config.schedule = "constant"
    return config


def _test_accuracy(config, variables):
    """Of ``variables`` on the digits test set: one forward pass, counted with numpy."""
    images, labels = digits.arrays("test")
    logits = jax.jit(lambda v, x: build_model(config).apply(v, x, train=False))(
        variables, digits.normalize(images)
    )
    return float(np.mean(np.argmax(np.asarray(logits), -1) == labels))


def test_export_refuses_an_extended_and_stopped_run_and_labels_what_it_exports(tmp_path):
    workdir, out = tmp_path / "run", tmp_path / "out" / "w"
    trainer.train_and_evaluate(_digits_config(1), workdir)  # 22 steps, finished
    finished_1 = (workdir / trainer.RESULTS).read_text()
    data = input_pipeline.get_datasets(_digits_config(2))
    calls = {"n": 0}

    def stop_at_step_30(batch, train):
        if train:
            calls["n"] += 1
            if calls["n"] == 30 - 22:
                os.kill(os.getpid(), signal.SIGTERM)
        return data.preprocess(batch, train)

    stopped = trainer.train_and_evaluate(
        _digits_config(2),
        workdir,
        data=input_pipeline.Data(data.train, data.test, stop_at_step_30),
        allow_change=["num_epochs"],
    )
    assert stopped["preempted"] and stopped["steps"] == 30
    with pytest.raises(export.WeightsError, match="stopped at step 30 before its end") as e:
        export.export(workdir, _digits_config(2), out)
    assert "finish the run with its training command" in str(e.value)
    with pytest.raises(export.WeightsError, match="stopped at step 30"):
        export.export(workdir / trainer.FINAL_VARIABLES, _digits_config(2), out)
    assert not out.parent.exists()

    # killed later in the extension: results.json is still the 1-epoch run's
    shutil.copytree(workdir, tmp_path / "killed")
    (tmp_path / "killed" / trainer.RESULTS).write_text(finished_1)
    with pytest.raises(export.WeightsError, match="checkpoint at step 30"):
        export.export(tmp_path / "killed", _digits_config(2), out)

    # the hint followed: the training command again, then export
    done = trainer.train_and_evaluate(_digits_config(2), workdir, allow_change=["num_epochs"])
    assert done["steps"] == 44 and not done["preempted"]
    sidecar = export.export(workdir, _digits_config(2), out)
    assert sidecar["results"]["steps"] == 44
    exported = export.load(f"{out}.msgpack", _digits_config(2))
    accuracy = _test_accuracy(_digits_config(2), exported)
    # the sidecar's figure is the accuracy of the weights beside it (the trainer's
    # sharded evaluation may round a borderline logit otherwise: within one example)
    assert abs(sidecar["results"]["final_test_accuracy"] - accuracy) <= 1 / 360 + 1e-9
    _assert_params_equal(exported["params"], done["state"].params)
