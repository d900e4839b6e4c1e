"""The experiment entry point end to end on tiny files in the real on-disk formats."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from flax import serialization

from experiments import config_check, trainer
from experiments.configs import fashion_mnist as fmnist_config
from experiments.configs import gesture as gesture_config
from mlf_jax.data.errors import DatasetNotFoundError

from ..data.event_files import random_events, write_gesture_sample
from ..data.idx_files import write_fashion_mnist

ROOT = Path(__file__).resolve().parents[2]


def _tiny(config, data_dir):
    config.data_dir = str(data_dir)
    config.model.widths = (4, 4, 4)
    config.model.depth = 8
    config.batch_size = 16
    config.eval_batch_size = 16
    config.num_epochs = 1
    return config


def _evals(workdir):
    lines = [json.loads(x) for x in (workdir / "metrics.jsonl").read_text().splitlines()]
    return [r for r in lines if r["kind"] == "eval"]


def test_fashion_mnist_end_to_end(tmp_path):
    data = write_fashion_mnist(tmp_path / "data", 64, 20)
    config = _tiny(fmnist_config.get_config(), data)
    config.model.time_steps = 1
    results = trainer.train_and_evaluate(config, str(tmp_path / "work"))
    assert results["steps"] == 4
    (record,) = _evals(tmp_path / "work")
    assert 0.0 <= record["test_accuracy"] <= 1.0 and record["epoch"] == 1
    saved = serialization.msgpack_restore(
        (tmp_path / "work" / trainer.FINAL_VARIABLES).read_bytes()
    )
    state = results["state"]
    np.testing.assert_array_equal(
        saved["params"]["stem_conv"]["kernel"], state.params["stem_conv"]["kernel"]
    )
    np.testing.assert_array_equal(
        saved["batch_stats"]["stem_bn"]["mean"], state.batch_stats["stem_bn"]["mean"]
    )


def test_dvs_gesture_end_to_end_with_the_paper_preprocessing(tmp_path):
    rng = np.random.default_rng(0)
    for split, users in (("train", range(1, 9)), ("test", range(24, 26))):
        for user in users:
            for label in range(11):
                ev = random_events(rng, 300, 128, 128, 1_500_000)
                ev["t"] -= ev["t"] % 1000  # tonic's release stores whole milliseconds
                write_gesture_sample(tmp_path / "tonic", split, user, "fluorescent", label, ev)
    config = _tiny(gesture_config.get_config(), tmp_path / "tonic")
    config.model.time_steps = 40  # the paper's 40 frames of 30 ms
    results = trainer.train_and_evaluate(config, str(tmp_path / "work"))
    assert results["steps"] == (8 * 11) // 16
    assert _evals(tmp_path / "work")[0]["epoch"] == 1


def test_missing_data_names_the_directory(tmp_path):
    config = _tiny(fmnist_config.get_config(), tmp_path / "empty")
    with pytest.raises(DatasetNotFoundError, match=str(tmp_path / "empty")):
        trainer.train_and_evaluate(config, str(tmp_path / "work"))


def test_unknown_config_key_names_the_valid_ones():
    argv = ["--config=experiments/configs/digits.py", "--config.model.widht=(4,4,4)"]
    with pytest.raises(ValueError, match=r"config.model has no 'widht'; valid keys: .*widths"):
        config_check.check_overrides(argv)
    config_check.check_overrides(
        ["--config=experiments/configs/digits.py", "--config.model.widths=(4,4,4)"]
    )


def test_unknown_config_key_on_the_command_line_exits_with_the_message(tmp_path):
    out = subprocess.run(
        [sys.executable, "-m", "experiments.train", "--config=experiments/configs/digits.py",
         f"--workdir={tmp_path}", "--config.num_epoch=3"],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert out.returncode != 0
    assert "unknown config key 'num_epoch'" in out.stderr and "num_epochs" in out.stderr


def test_default_config_is_the_readme_job():
    c = fmnist_config.get_config()
    assert c.dataset == "fashion_mnist" and c.model.shortcut == "ds"
    assert tuple(c.model.thresholds) == (0.6, 1.6, 2.6)


@pytest.mark.filterwarnings("ignore:the load_module:DeprecationWarning")  # ml_collections
def test_a_command_line_run_validates_once_and_builds_its_model_once(monkeypatch, tmp_path):
    from absl import flags

    from experiments import models, train

    def spy(module, name):
        calls, real = [], getattr(module, name)
        monkeypatch.setattr(module, name, lambda *a, **k: calls.append(a) or real(*a, **k))
        return calls

    validations = spy(config_check, "validate")
    builds = spy(models, "build_model")
    divisible = spy(trainer, "check_divisible")
    config_file = tmp_path / "tiny_digits.py"
    config_file.write_text(
        "from experiments.configs import digits\n\n\n"
        "def get_config():\n"
        "    c = digits.get_config()\n"
        "    c.num_epochs, c.batch_size = 1, 240\n"
        "    c.model.widths, c.model.time_steps = (4, 4, 4), 1\n"
        "    return c\n"
    )
    argv = ["train", f"--config={config_file}", f"--workdir={tmp_path / 'work'}"]
    monkeypatch.chdir(ROOT)
    try:
        with pytest.raises(SystemExit) as exit_:
            train.run(argv)
    finally:
        flags.FLAGS.unparse_flags()
    assert exit_.value.code in (None, 0)
    assert (len(validations), len(builds), len(divisible)) == (1, 1, 1)
    assert json.loads((tmp_path / "work" / trainer.RESULTS).read_text())["steps"] == 1437 // 240
