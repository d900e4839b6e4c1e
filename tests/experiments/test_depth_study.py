"""The depth study end to end on tiny files in the Fashion-MNIST format: results, seeds and
their summary, plot, resume, reuse of an earlier results file."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from ..data.idx_files import write_fashion_mnist

ROOT = Path(__file__).resolve().parents[2]

# whole study processes (a few minutes together): `make test-slow`
pytestmark = pytest.mark.slow


def _command(data_dir: Path, workdir: Path, seeds: str = "3,5") -> list[str]:
    return [
        sys.executable,
        "-m",
        "experiments.depth_study",
        f"--workdir={workdir}",
        f"--data_dir={data_dir}",
        "--config.depths=8",
        "--config.widths=2,2,4",
        "--config.shortcuts=standard,ds",
        "--config.neurons=mlf",
        "--config.train_size=64",
        "--config.epochs=1",
        "--config.batch_size=32",
        "--config.probe_size=16",
        "--config.train_eval_size=32",
        f"--config.seeds={seeds}",
        f"--results_out={workdir / 'copy.json'}",
    ]


def _run(data_dir: Path, workdir: Path, *extra: str, seeds: str = "3,5") -> str:
    cmd = _command(data_dir, workdir, seeds) + list(extra)
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("depth_study")
    data = write_fashion_mnist(tmp / "data", 96, 32)
    first = _run(data, tmp / "work")
    return data, tmp / "work", first


def test_every_cell_is_trained_and_measured(study):
    _, work, out = study
    results = json.loads((work / "results.json").read_text())
    assert json.loads((work / "copy.json").read_text()) == results
    assert (work / "depth_study.png").stat().st_size > 0
    assert results["settings"]["seeds"] == [3, 5]
    runs = {(c["shortcut"], c["neuron"], c["depth"], c["seed"]): c for c in results["cells"]}
    assert set(runs) == {(s, "mlf", 8, seed) for s in ("standard", "ds") for seed in (3, 5)}
    cells = {k[:3]: c for k, c in runs.items() if k[3] == 3}
    for c in runs.values():
        assert c["diverged"] is None
        for key in ("train_accuracy", "test_accuracy", "dormant_init", "dormant_final"):
            assert 0.0 <= c[key] <= 1.0, (key, c[key])
        assert c["grad_norm_init"] > 0 and c["grad_norm_final"] > 0
    # neuron layers of a depth-8 net: the stem and two per block (3 blocks); DS-ResNet adds a
    # neuron after each of the two projection shortcuts, the spiking ResNet has none there
    assert len(cells["standard", "mlf", 8]["dormant_per_layer_final"]) == 1 + 3 * 2
    assert len(cells["ds", "mlf", 8]["dormant_per_layer_final"]) == 1 + 3 * 2 + 2
    assert "| DS-ResNet | MLF | 8 | 2 |" in out and "| spiking ResNet | MLF | 8 | 2 |" in out
    # the two seeds differ (subset, initialisation, order) ...
    assert runs["ds", "mlf", 8, 3]["grad_norm_init"] != runs["ds", "mlf", 8, 5]["grad_norm_init"]
    # ... and the summary is their mean, sample standard deviation and range
    for s in results["summary"]:
        assert s["seeds"] == [3, 5]
        a, b = (runs[s["shortcut"], s["neuron"], s["depth"], seed] for seed in (3, 5))
        for key in ("test_accuracy", "train_accuracy", "dormant_final", "grad_norm_init"):
            got = s[key]
            assert got["n"] == 2
            assert got["mean"] == pytest.approx((a[key] + b[key]) / 2, rel=1e-12)
            assert got["std"] == pytest.approx(abs(a[key] - b[key]) / 2**0.5, rel=1e-9, abs=1e-15)
            assert (got["min"], got["max"]) == (min(a[key], b[key]), max(a[key], b[key]))


def test_a_second_run_resumes_without_training_again(study):
    data, work, _ = study
    before = (work / "results.json").read_text()
    again = _run(data, work)
    assert "== " not in again  # no cell was trained
    assert (work / "results.json").read_text() == before


def test_previous_results_are_reused_and_only_new_seeds_trained(study, tmp_path):
    data, work, _ = study
    first = json.loads((work / "results.json").read_text())
    out = _run(
        data, tmp_path / "more", f"--previous_results={work / 'results.json'}", seeds="3,5,7"
    )
    trained = [line for line in out.splitlines() if line.startswith("== ")]
    assert len(trained) == 2 and all("_s7:" in line for line in trained), trained
    results = json.loads((tmp_path / "more" / "results.json").read_text())
    assert results["settings"]["seeds"] == [3, 5, 7]
    old = {(c["shortcut"], c["seed"]): c for c in first["cells"]}
    for c in results["cells"]:
        if c["seed"] != 7:
            kept = {k: v for k, v in c.items() if k != "source"}
            assert kept == old[c["shortcut"], c["seed"]]
    assert all(s["seeds"] == [3, 5, 7] for s in results["summary"])


def test_a_study_stopped_part_way_keeps_its_finished_runs(study, tmp_path):
    """Stopped during its second run, a study's results file holds the first run (and names
    the rest as pending); passed as --previous_results in a new workdir (another machine),
    only the runs not in it are trained."""
    data, _, _ = study
    cmd = _command(data, tmp_path / "first", seeds="3,5")
    proc = subprocess.Popen(
        cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
    )
    started = []
    try:
        for line in proc.stdout:
            if line.startswith("== "):
                started.append(line)
                if len(started) == 2:  # the first run is trained, measured and written
                    break
        partial = json.loads((tmp_path / "first" / "copy.json").read_text())
    finally:
        proc.terminate()
        proc.wait(timeout=120)
    assert len(started) == 2, started
    assert [(c["shortcut"], c["seed"]) for c in partial["cells"]] == [("standard", 3)]
    assert partial["settings"]["seeds"] == [3]
    assert partial["pending"] == [
        ["standard", "mlf", 8, 5],
        ["ds", "mlf", 8, 3],
        ["ds", "mlf", 8, 5],
    ]
    assert [s["seeds"] for s in partial["summary"]] == [[3]]
    carried = tmp_path / "carried.json"
    carried.write_text(json.dumps(partial))
    out = _run(data, tmp_path / "second", f"--previous_results={carried}", seeds="3,5")
    trained = [line.split(":")[0] for line in out.splitlines() if line.startswith("== ")]
    assert trained == ["== standard_mlf_d8_s5", "== ds_mlf_d8_s3", "== ds_mlf_d8_s5"], trained
    results = json.loads((tmp_path / "second" / "results.json").read_text())
    assert results["pending"] == [] and len(results["cells"]) == 4
    assert {k: v for k, v in results["cells"][0].items() if k != "source"} == partial["cells"][0]


def test_previous_results_with_other_settings_are_refused(study, tmp_path):
    data, work, _ = study
    cmd = [
        a.replace("--config.epochs=1", "--config.epochs=2") for a in _command(data, tmp_path / "w")
    ]
    cmd.append(f"--previous_results={work / 'results.json'}")
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 1
    assert "other settings: epochs: 1 there, 2 here" in done.stderr, done.stderr[-2000:]
    assert "Traceback" not in done.stderr


def test_a_rerun_with_other_training_settings_is_refused(study):
    data, work, _ = study
    cmd = [a.replace("--config.epochs=1", "--config.epochs=2") for a in _command(data, work)]
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 1
    assert "differing keys: num_epochs: 1 -> 2" in done.stderr, done.stderr[-2000:]
    assert "Traceback" not in done.stderr


# Two probes of one tiny model in a fresh process (depth_study's flags clash with train's in
# this one). probe's gradient runs op by op and compiles each neuron layer's lax.scan anew on
# every call; JAX's op-by-op cache used to keep every such executable (18 more per call here,
# several GB per depth-68 cell of the study), so the count must not grow from call to call.
_PROBE_TWICE = """
import gc, json
import jax, jax.extend, numpy as np
import mlf_jax as mj
from experiments import depth_study
model = mj.models.resnet(8, widths=(2, 2, 4), num_classes=3, time_steps=2)
x = np.random.default_rng(0).standard_normal((4, 8, 8, 1)).astype(np.float32)
variables = model.init(jax.random.key(0), x, train=False)
batch = {"image": x, "label": np.arange(4) % 3}
live, results = [], []
for _ in range(2):
    results.append(depth_study.probe(model, variables, batch, (0.6, 1.6, 2.6)))
    gc.collect()
    live.append(len(jax.extend.backend.get_backend().live_executables()))
print(json.dumps({"live": live, "same": results[0] == results[1]}))
"""


def test_probe_keeps_no_compiled_executables_from_call_to_call():
    done = subprocess.run(
        [sys.executable, "-c", _PROBE_TWICE], cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out["same"]
    assert out["live"][1] <= out["live"][0], out["live"]
