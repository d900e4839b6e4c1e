"""The fit study end to end on tiny files in the Fashion-MNIST format: one row per run, the
probes inside the net, resuming, and refusals of a changed budget or an unknown variant."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from ..data.idx_files import write_fashion_mnist

ROOT = Path(__file__).resolve().parents[2]

# whole study processes: `make test-slow`
pytestmark = pytest.mark.slow


def _run(data: Path, out: Path, *extra: str) -> subprocess.CompletedProcess:
    cmd = [
        sys.executable, "-m", "experiments.fit_study", f"--data_dir={data}", f"--out={out}",
        "--train_size=64", "--epochs=2", "--batch_size=32", "--probe_size=16", *extra,
    ]  # fmt: skip
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("fit_study")
    data = write_fashion_mnist(tmp / "data", 96, 40)
    out = tmp / "fit.json"
    done = _run(data, out, "--variants=base,relu", f"--plot={tmp / 'fit.png'}")
    assert done.returncode == 0, done.stderr[-3000:]
    return data, out, tmp


def test_every_run_is_a_row_with_its_probes(study):
    _, out, tmp = study
    saved = json.loads(out.read_text())
    assert saved["budget"]["train_size"] == 64 and saved["budget"]["epochs"] == 2
    rows = {r["variant"]: r for r in saved["runs"]}
    assert set(rows) == {"base", "relu"}
    for r in rows.values():
        assert 0 <= r["train_accuracy"] <= 1 and 0 <= r["test_accuracy"] <= 1
    base = rows["base"]
    assert 0 <= base["dormant"] <= 1 and 0 <= base["upper_levels"] <= base["spikes_per_unit"] / 2
    assert base["grad_first_over_last"] > 0
    assert "dormant" not in rows["relu"]  # no spiking layer to probe
    assert (tmp / "fit.png").stat().st_size > 0


def test_a_finished_run_is_not_trained_again(study):
    data, out, _ = study
    before = out.read_text()
    done = _run(data, out, "--variants=base")
    assert done.returncode == 0, done.stderr[-3000:]
    assert out.read_text() == before and "[" not in done.stdout


def test_another_budget_or_variant_is_refused(study):
    data, out, _ = study
    done = _run(data, out, "--variants=base", "--epochs=3")
    assert done.returncode != 0 and "another budget" in done.stderr
    done = _run(data, out, "--variants=bigger")
    assert done.returncode != 0 and "unknown variants ['bigger']" in done.stderr
