"""Per-epoch curves from a run's metrics.jsonl."""

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

from experiments import curves

ROOT = Path(__file__).resolve().parents[2]

RECORDS = [
    {"step": 2, "kind": "train", "loss": 2.0, "accuracy": 0.2},
    {"step": 4, "kind": "train", "loss": 1.0, "accuracy": 0.4},
    {"step": 4, "kind": "eval", "epoch": 1, "test_loss": 0.9, "test_accuracy": 0.5,
     "wall_seconds": 10.0},
    {"step": 6, "kind": "train", "loss": 0.5, "accuracy": 0.7},
    {"step": 8, "kind": "train", "loss": 0.3, "accuracy": 0.8},
    {"step": 8, "kind": "eval", "epoch": 2, "test_loss": 0.4, "test_accuracy": 0.75,
     "wall_seconds": 20.0},
]  # fmt: skip


def test_epochs_average_each_epochs_train_records():
    rows = curves.epochs(RECORDS)
    assert [r["epoch"] for r in rows] == [1, 2]
    assert rows[0]["train_loss"] == pytest.approx(1.5)
    assert rows[0]["train_accuracy"] == pytest.approx(0.3)
    assert rows[1]["train_loss"] == pytest.approx(0.4)
    assert rows[1]["train_accuracy"] == pytest.approx(0.75)
    assert (rows[1]["test_loss"], rows[1]["test_accuracy"], rows[1]["wall_seconds"]) == (
        0.4,
        0.75,
        20.0,
    )
    assert "| 2 | 0.4000 | 75.00 % | 0.4000 | 75.00 % | 20 s |" in curves.table(rows)


def test_an_epoch_without_train_records_has_nan_train_figures():
    rows = curves.epochs([r for r in RECORDS if r["kind"] == "eval"])
    assert math.isnan(rows[0]["train_loss"])


def test_no_evaluation_is_an_error():
    with pytest.raises(ValueError, match="no evaluation"):
        curves.epochs(RECORDS[:2])


def test_command_writes_a_png_and_names_a_missing_run(tmp_path):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in RECORDS))
    cmd = [sys.executable, "-m", "experiments.curves", f"--out={tmp_path / 'c.png'}", "--table"]
    done = subprocess.run(
        [*cmd, f"--workdir={tmp_path / 'run'}"], cwd=ROOT, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "c.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "| 1 | 1.5000 | 30.00 % |" in done.stdout
    done = subprocess.run(
        [*cmd, f"--workdir={tmp_path / 'none'}"], cwd=ROOT, capture_output=True, text=True
    )
    assert done.returncode == 1 and done.stderr.strip().startswith("error: no evaluation")
