"""One CPU device per core: the count chosen, the opt-out, and the command line."""

import os
import subprocess
import sys

import pytest

from experiments import cpu_devices

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.mark.parametrize(
    "cores, batches, expected",
    [
        (2, [64], 2),
        (16, [28], 14),  # the Gesture batch on a 16-core host
        (16, [28, 64], 4),  # must divide both
        (8, [7], 7),
        (3, [], 3),
        (1, [64], 1),
        (4, [0, 6], 3),  # sizes <= 0 are ignored
    ],
)
def test_the_largest_count_that_divides_every_batch(cores, batches, expected):
    assert cpu_devices.device_count_for(cores, batches) == expected


def _run(code: str, **env) -> subprocess.CompletedProcess:
    full = {k: v for k, v in os.environ.items() if k not in ("XLA_FLAGS", cpu_devices.ENV_VAR)}
    full.update(env, JAX_PLATFORMS="cpu")
    return subprocess.run(
        [sys.executable, "-c", code], env=full, cwd=ROOT, capture_output=True, text=True
    )


CHOOSE = (
    "from experiments import cpu_devices; n = cpu_devices.use_every_core([12]); "
    "import jax; print(n, jax.device_count())"
)


@pytest.mark.parametrize(
    "env, expected",
    [
        ({cpu_devices.ENV_VAR: "3"}, "3 3"),
        ({cpu_devices.ENV_VAR: "1"}, "1 1"),  # the opt-out
        # an explicit XLA flag is left alone
        ({"XLA_FLAGS": "--xla_force_host_platform_device_count=4"}, "None 4"),
    ],
)
def test_use_every_core_sets_jax_before_its_backend_starts(env, expected):
    result = _run(CHOOSE, **env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split("\n")[-2] == expected


def test_default_is_every_core_dividing_the_batch():
    result = _run(CHOOSE)
    cores = cpu_devices.core_count()
    n = cpu_devices.device_count_for(cores, [12])
    assert result.stdout.split("\n")[-2] == f"{n} {n}"


def test_after_the_backend_started_it_changes_nothing():
    code = (
        "import jax; jax.devices(); from experiments import cpu_devices; "
        "print(cpu_devices.use_every_core([12]), jax.device_count())"
    )
    assert _run(code, **{cpu_devices.ENV_VAR: "3"}).stdout.split("\n")[-2] == "None 1"


@pytest.mark.parametrize("value", ["0", "many"])
def test_a_bad_setting_is_one_line_from_the_command_line(tmp_path, value):
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "experiments.train",
            "--config=experiments/configs/fashion_mnist.py",
            f"--workdir={tmp_path / 'w'}",
        ],
        env={**os.environ, cpu_devices.ENV_VAR: value, "MLF_JAX_ALLOCATOR": "system"},
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 1
    assert result.stderr.strip() == (
        f"error: {cpu_devices.ENV_VAR} must be 'all' or an integer >= 1, got {value!r}"
    )
    assert not (tmp_path / "w").exists()


def test_a_started_backend_is_left_alone_without_jax_private_modules():
    result = _run(
        "import jax; jax.numpy.zeros(1); from experiments import cpu_devices; "
        "print(cpu_devices.use_every_core([12]), jax.device_count())",
        **{cpu_devices.ENV_VAR: "3"},
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split("\n")[-2] == "None 1"
    with open(cpu_devices.__file__) as f:
        assert "jax._src" not in f.read()
