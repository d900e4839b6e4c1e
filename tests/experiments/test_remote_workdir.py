"""A ``gs://`` work directory, on a fake GCS server on 127.0.0.1: every file of a run
goes there (checkpoints, metrics, TensorBoard, results, config, lock, final variables),
nothing is written locally, and a restart resumes from the remote checkpoints."""

import hashlib
import json
import os

import jax
import pytest
from etils import epath
from flax import serialization

from experiments import export, input_pipeline, trainer
from mlf_jax.train import LockedError, RunLock, read_metrics

from ..fake_gcs import fake_gcs
from .test_trainer import _config, _data


@pytest.fixture
def gcs_workdir(tmp_path, monkeypatch):
    """``gs://bucket/run`` on a fresh fake server; the test runs in an empty cwd."""
    monkeypatch.chdir(tmp_path)
    with fake_gcs("bucket") as root:
        yield root + "/run"


def test_a_run_writes_only_to_the_remote_workdir_and_resumes_from_it(
    gcs_workdir, tmp_path, monkeypatch
):
    data = _data(64, 16)
    monkeypatch.setattr(input_pipeline, "get_datasets", lambda config: data)
    config = _config(num_epochs=1, checkpoint_every_steps=2, keep_checkpoints=2)
    out = trainer.train_and_evaluate(config, gcs_workdir)
    assert out["steps"] == 4
    assert os.listdir(tmp_path) == []  # nothing local, no ./gs:/bucket/run
    root = epath.Path(gcs_workdir)
    names = sorted(p.name for p in root.iterdir())
    assert names == [
        "checkpoints", "config.json", trainer.FINAL_VARIABLES, "metrics.jsonl", "results.json",
        "tensorboard",
    ]  # fmt: skip
    assert sorted(p.name for p in (root / "checkpoints").iterdir()) == ["2", "4"]
    assert json.loads((root / "results.json").read_text())["steps"] == 4
    assert [r["kind"] for r in read_metrics(root)][-1] == "eval"
    (events,) = list((root / "tensorboard").iterdir())
    assert events.name.startswith("events.out.tfevents") and events.stat().length > 100
    saved = serialization.msgpack_restore((root / trainer.FINAL_VARIABLES).read_bytes())
    first = jax.tree.leaves(out["state"].params)[0]
    assert jax.tree.leaves(saved["params"])[0].shape == first.shape

    # extend the run: it resumes at step 4 from the remote checkpoint
    config.num_epochs = 2
    again = trainer.train_and_evaluate(config, gcs_workdir, allow_change=["num_epochs"])
    assert again["steps"] == 8
    assert os.listdir(tmp_path) == []
    steps = [(r["kind"], r["step"]) for r in read_metrics(root)]
    assert len(steps) == len(set(steps))

    # its weights exported to the store too (through mlf_jax.models.save's local files)
    side = export.export(gcs_workdir, config, gcs_workdir + "_weights/w.msgpack")
    weights = epath.Path(gcs_workdir + "_weights")
    assert sorted(p.name for p in weights.iterdir()) == ["w.json", "w.msgpack"]
    assert json.loads((weights / "w.json").read_text()) == side
    assert side["sha256"] == hashlib.sha256((weights / "w.msgpack").read_bytes()).hexdigest()
    assert os.listdir(tmp_path) == []


def test_the_remote_lock_is_exclusive(gcs_workdir, tmp_path):
    with RunLock(gcs_workdir):
        with pytest.raises(LockedError, match="in use by another run"):
            RunLock(gcs_workdir).acquire()
    RunLock(gcs_workdir).acquire()
    assert os.listdir(tmp_path) == []
