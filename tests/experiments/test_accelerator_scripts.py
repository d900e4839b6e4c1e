"""The accelerator scripts parse, and name modules and test files that exist."""

import importlib.util
import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPTS = [
    "experiments/bench/accelerator.sh",
    "experiments/bench/accelerator_wheels.sh",
    "experiments/bench/accelerator_train.sh",
]


@pytest.mark.parametrize("script", SCRIPTS)
def test_script_parses(script):
    done = subprocess.run(["bash", "-n", ROOT / script], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def test_accelerator_script_names_what_exists():
    text = (ROOT / SCRIPTS[0]).read_text()
    modules = re.findall(r'"\$py" -m (\S+)', text)
    assert {"pytest", "experiments.bench.neuron", "experiments.train"} <= set(modules)
    for module in modules:
        assert importlib.util.find_spec(module) is not None, module
    tests = re.findall(r"\b(tests/\S+)", text)
    assert tests and all((ROOT / t).exists() for t in tests), tests
    configs = re.findall(r"--config=(\S+)", text)
    assert configs and all((ROOT / c).exists() for c in configs), configs


@pytest.mark.parametrize(
    "args, message",
    [
        ([], "usage: accelerator_train.sh OUTDIR STEM"),
        (["{out}", "nope"], "no config experiments/configs/nope.py"),
        (["{out}", "fashion_mnist_converged"], "no Fashion-MNIST files in"),
    ],
)
def test_the_training_script_refuses_before_it_starts(tmp_path, args, message):
    args = [a.format(out=tmp_path / "out") for a in args]
    env = {"PATH": "/usr/bin:/bin", "DATA_DIR": str(tmp_path / "no_data")}
    done = subprocess.run(
        ["bash", ROOT / SCRIPTS[2], *args], cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert done.returncode != 0 and message in done.stderr, done.stderr
    assert not (tmp_path / "out").exists()
