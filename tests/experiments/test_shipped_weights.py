"""The weights shipped in ``experiments/weights/`` are what their sidecars and the README say:
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
    fashion_mnist_converged_vth1,
)
from mlf_jax.data import fashion_mnist as fashion_mnist_data

ROOT = Path(__file__).resolve().parents[2]
WEIGHTS = ROOT / "experiments" / "weights"

#: Each shipped model and the config it was trained with.
SHIPPED = {
    "fashion_mnist_main": fashion_mnist.get_config,
    "fashion_mnist_converged": fashion_mnist_converged.get_config,
    "fashion_mnist_converged_vth1": fashion_mnist_converged_vth1.get_config,
}

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
def test_the_readmes_state_the_sidecars_accuracy(name):
    accuracy = f"{100 * _sidecar(name)['results']['final_test_accuracy']:.2f} %"
    table = (WEIGHTS / "README.md").read_text()
    assert re.search(rf"\| `{name}` \|[^\n]*\| {re.escape(accuracy)} \|", table), accuracy
    assert accuracy in (ROOT / "README.md").read_text()


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
