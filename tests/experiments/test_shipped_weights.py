"""The weights shipped in ``experiments/weights/`` are what their sidecars and the results pages
(``docs/results/``) and the README's table of results say:
the file's sha256, the parameter count, and the test accuracy, re-measured on the real
Fashion-MNIST test set in eval mode by ``experiments.evaluate`` (not read back from the run)."""

import hashlib
import json
import os
import re
from pathlib import Path

import pytest

import mlf_jax as mj
from experiments import evaluate, export
from experiments.configs import (
    fashion_mnist,
    fashion_mnist_converged,
    fashion_mnist_converged_learned,
    fashion_mnist_converged_vth1,
)
from mlf_jax.data import fashion_mnist as fashion_mnist_data

ROOT = Path(__file__).resolve().parents[2]
WEIGHTS = ROOT / "experiments" / "weights"
RESULTS = ROOT / "docs" / "results"

#: The results page that describes each shipped model's run, and how it states the accuracy.
PAGES = {
    "fashion_mnist_main": (RESULTS / "main-job.md", "seed 0 gave {} with them"),
    "fashion_mnist_converged": (RESULTS / "converged.md", "It reaches **{}** test accuracy"),
    "fashion_mnist_converged_vth1": (RESULTS / "converged.md", "It reaches **{}** test accuracy"),
    "fashion_mnist_converged_learned": (
        RESULTS / "converged.md",
        "It reaches **{}** test accuracy",
    ),
}

#: The shipped models whose accuracy the README's table of results quotes.
HEADLINE = {
    "fashion_mnist_main": "the main job",
    "fashion_mnist_converged_learned": "the converged model",
}

#: Each shipped model and the config it was trained with.
SHIPPED = {
    "fashion_mnist_main": fashion_mnist.get_config,
    "fashion_mnist_converged": fashion_mnist_converged.get_config,
    "fashion_mnist_converged_vth1": fashion_mnist_converged_vth1.get_config,
    "fashion_mnist_converged_learned": fashion_mnist_converged_learned.get_config,
}

#: The converged runs, in the order of the rows of the converged-runs page's table by epoch.
CONVERGED_ROWS = (
    "fashion_mnist_converged",
    "fashion_mnist_converged_vth1",
    "fashion_mnist_converged_learned",
)

needs_data = pytest.mark.skipif(
    not os.path.isdir(fashion_mnist_data.DEFAULT_DIR),
    reason=f"real Fashion-MNIST not installed in {fashion_mnist_data.DEFAULT_DIR} (make data)",
)


def _shipped() -> list[str]:
    return [name for name in SHIPPED if (WEIGHTS / f"{name}.json").exists()]


def _sidecar(name: str) -> dict:
    return json.loads((WEIGHTS / f"{name}.json").read_text())


def test_every_sidecar_has_its_config_here():
    assert {p.stem for p in WEIGHTS.glob("*.json")} <= set(SHIPPED)


@pytest.mark.parametrize("name", _shipped())
def test_sidecar_matches_its_file(name):
    side = _sidecar(name)
    data = (WEIGHTS / side["weights_file"]).read_bytes()
    assert hashlib.sha256(data).hexdigest() == side["sha256"]
    variables = export.load(WEIGHTS / side["weights_file"], SHIPPED[name]())
    assert mj.models.num_params(variables) == side["num_params"]


@pytest.mark.parametrize("name", _shipped())
def test_the_docs_state_the_sidecars_accuracy(name):
    accuracy = f"{100 * _sidecar(name)['results']['final_test_accuracy']:.2f} %"
    table = (WEIGHTS / "README.md").read_text()
    assert re.search(rf"\| `{name}` \|[^\n]*\| {re.escape(accuracy)} \|", table), accuracy
    page, claim = PAGES[name]
    text = " ".join(page.read_text().split())  # the claim may wrap across lines
    assert claim.format(accuracy) in text, (page.name, claim.format(accuracy))
    if name in HEADLINE:
        row = re.search(
            rf"^\| {HEADLINE[name]}[^|]*\| (.*?) \|", (ROOT / "README.md").read_text(), re.M
        )
        assert row and f"**{accuracy}**" in row.group(1), (HEADLINE[name], accuracy)


@needs_data
@pytest.mark.parametrize("name", _shipped())
def test_shipped_weights_reach_their_recorded_test_accuracy(name):
    config = SHIPPED[name]()
    side = _sidecar(name)
    variables = export.load(WEIGHTS / side["weights_file"], config)
    result = evaluate.evaluate(config, variables, batch_size=500, progress=False)
    assert result["num_examples"] == 10_000
    # the run's own last evaluation was on the same 10,000 images, sharded over two devices
    # (one here): float sums may round apart on a few images, so up to 3 of them may differ
    recorded = side["results"]["final_test_accuracy"]
    assert abs(result["test_accuracy"] - recorded) <= 3e-4, (result["test_accuracy"], recorded)


def _page_table_rows(header: str) -> list[list[str]]:
    """The cells after the first of each row of the converged-runs page's table under
    ``header`` (which it holds once), one row per entry of ``CONVERGED_ROWS``, in that order."""
    readme = (RESULTS / "converged.md").read_text()
    assert readme.count(header) == 1, header
    lines = readme[readme.index(header) :].splitlines()[2 : 2 + len(CONVERGED_ROWS)]
    return [[c.strip() for c in line.strip("|").split("|")[1:]] for line in lines]


def test_the_pages_epoch_table_is_the_converged_runs_metrics():
    """The converged-runs page's table of test accuracy by epoch quotes each converged run's
    ``<name>_metrics.jsonl``, row by row in the order of ``CONVERGED_ROWS``."""
    header = "| epoch | 4 | 8 | 12 | 16 | 20 | 24 | 28 | 32 | 36 | 40 |"
    epochs = [int(e) for e in header.strip("|").split("|")[1:]]
    for cells, name in zip(_page_table_rows(header), CONVERGED_ROWS, strict=True):
        quoted = [float(c) for c in cells]
        tests = {}
        for row in (WEIGHTS / f"{name}_metrics.jsonl").read_text().splitlines():
            record = json.loads(row)
            if record.get("kind") == "eval":
                tests[record["epoch"]] = record["test_accuracy"]
        assert quoted == [round(100 * tests[e], 2) for e in epochs], (name, cells)


def _page_train_fit_rows() -> list[tuple[float, ...]]:
    """``(train %, test %, gap)`` of the converged-runs page's table of how the converged models
    fit their training images, row by row in the order of ``CONVERGED_ROWS``."""
    rows = _page_table_rows("| run | training images | test | gap |")
    return [tuple(float(c.rstrip("%")) for c in cells) for cells in rows]


def test_the_pages_train_fit_table_is_consistent():
    rows = _page_train_fit_rows()
    for (train, test, gap), name in zip(rows, CONVERGED_ROWS, strict=True):
        assert test == round(100 * _sidecar(name)["results"]["final_test_accuracy"], 2), name
        assert gap == pytest.approx(train - test, abs=1e-9), name


@pytest.mark.slow
@needs_data
@pytest.mark.parametrize("row", range(len(CONVERGED_ROWS)))
def test_the_pages_train_fit_is_measured_from_the_weights(row):
    """The converged-runs page's training-image accuracy of each converged model, re-measured: the
    weights in eval mode on the 60,000 unaugmented training images."""
    name = CONVERGED_ROWS[row]
    config = SHIPPED[name]()
    variables = export.load(WEIGHTS / f"{name}.msgpack", config)
    result = evaluate.evaluate(config, variables, batch_size=500, progress=False, split="train")
    assert result["num_examples"] == 60_000
    assert 100 * result["train_accuracy"] == pytest.approx(_page_train_fit_rows()[row][0], abs=0.01)
