"""The experiment entry point end to end on tiny Fashion-MNIST files (real IDX format)."""

import json

import pytest

from experiments import train
from experiments.configs import fashion_mnist as fmnist_config
from mlf_jax.data.fashion_mnist import DatasetNotFoundError

from ..data.idx_files import write_fashion_mnist


def _tiny_config(data_dir):
    c = fmnist_config.get_config()
    c.data_dir = str(data_dir)
    c.model.widths = (4, 4, 4)
    c.model.time_steps = 1
    c.batch_size = 16
    c.eval_batch_size = 16
    c.num_epochs = 1
    return c


def test_train_and_evaluate_on_tiny_fashion_mnist(tmp_path):
    data = write_fashion_mnist(tmp_path / "data", 64, 20)
    results = train.train_and_evaluate(_tiny_config(data), str(tmp_path / "work"))
    assert results["steps"] == 4
    record = json.loads((tmp_path / "work" / "metrics.jsonl").read_text().splitlines()[-1])
    assert 0.0 <= record["test_accuracy"] <= 1.0 and record["epoch"] == 1


def test_missing_data_names_the_directory(tmp_path):
    with pytest.raises(DatasetNotFoundError, match=str(tmp_path / "empty")):
        train.train_and_evaluate(_tiny_config(tmp_path / "empty"), str(tmp_path / "work"))


def test_default_config_is_the_readme_job():
    c = fmnist_config.get_config()
    assert c.dataset == "fashion_mnist" and c.model.shortcut == "ds"
    assert tuple(c.model.thresholds) == (0.6, 1.6, 2.6)
