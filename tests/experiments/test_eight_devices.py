"""The shipped configs on 8 (fake CPU) devices: CIFAR10 as shipped trains and evaluates
(its evaluation batch of 500 is rounded to 504), and the dry run reports the figures a pod
user checks before launching."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from ..conftest import subprocess_xla_flags
from ..data.cifar_files import tiny_cifar, write_folder

ROOT = Path(__file__).resolve().parents[2]


def _run(*args, timeout=600):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "MLF_JAX_ALLOCATOR": "system"}
    env["XLA_FLAGS"] = subprocess_xla_flags(8)
    return subprocess.run(
        [sys.executable, "-m", "experiments.train", *args],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout,
    )  # fmt: skip


@pytest.mark.slow
def test_cifar10_as_shipped_trains_and_evaluates_on_8_devices(tmp_path):
    # 64 training images: one step of the shipped batch of 64 (8 per device)
    data = write_folder(tmp_path / "data", tiny_cifar(sizes=(13, 13, 13, 13, 12), n_test=10))
    out = _run(
        "--config=experiments/configs/cifar10.py", f"--workdir={tmp_path / 'work'}",
        f"--config.data_dir={data}", "--config.num_epochs=1",
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-3000:]
    results = json.loads((tmp_path / "work" / "results.json").read_text())
    assert results["steps"] == 1 and results["num_params"] == 4_327_754
    (record,) = [
        json.loads(x)
        for x in (tmp_path / "work" / "metrics.jsonl").read_text().splitlines()
        if '"eval"' in x
    ]
    assert 0.0 <= record["test_accuracy"] <= 1.0
    assert record["test_accuracy"] * 10 == pytest.approx(round(record["test_accuracy"] * 10))


def test_dry_run_on_8_devices_prints_the_figures_and_fills_the_compilation_cache(tmp_path):
    out = _run(
        "--config=experiments/configs/digits.py", f"--workdir={tmp_path / 'work'}", "--dry_run",
        "--config.eval_batch_size=100", f"--config.compilation_cache_dir={tmp_path / 'cache'}",
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-3000:]
    text = out.stdout
    assert "8 devices in 1 process(es), shard_map" in text
    assert "train batch 32 = 4 per device, 44 steps per epoch" in text
    assert "eval batch 100 -> 104 (13 per device)" in text
    assert "parameters: 6,386 (0.0 MiB)" in text
    assert "train_step: compiled in" in text and "temporaries" in text
    # what XLA's memory analysis counts, named: the total holds the temporaries
    line = next(x for x in text.splitlines() if "train_step: compiled in" in x)
    temp, total = (float(re.search(rf"{w} ([\d.,]+) MiB", line)[1]) for w in ("temporaries", ":"))
    assert "in all while it runs" in line and "peak" not in line and total >= temp > 0, line
    assert not (tmp_path / "work").exists()
    assert any((tmp_path / "cache").iterdir())  # the persistent compilation cache was used


def test_a_train_batch_that_does_not_divide_names_the_nearest_sizes(tmp_path):
    out = _run(
        "--config=experiments/configs/digits.py", f"--workdir={tmp_path / 'work'}",
        "--config.batch_size=28",
    )  # fmt: skip
    assert out.returncode == 1
    assert (
        "error: config.batch_size 28 is not divisible by the number of devices (8); "
        "nearest valid sizes: 24 or 32" in out.stderr
    )
    assert "Traceback" not in out.stderr
