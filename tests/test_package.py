"""What ``import mlf_jax`` loads: the core only; the pipelines and training tools on use."""

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

#: Packages of the data and training extras that the core must not import.
NOT_CORE = (
    "orbax",
    "grain",
    "tensorflow_datasets",
    "tonic",
    "tensorboardX",
    "sklearn",
    "PIL",
    "aedat",
    "tqdm",
    "ml_collections",
    "matplotlib",
    "optax",  # with mlf_jax.train only
)

_PROBE = """
import json, sys
import mlf_jax as mj
core = sorted({m.split(".")[0] for m in sys.modules})
x = mj.lif(__import__("jax").numpy.ones((3, 2)))  # the core works
lazy_before = sorted(m for m in ("mlf_jax.data", "mlf_jax.train") if m in sys.modules)
tx = mj.train.sgd(0.1)  # first use loads the sub-package
from mlf_jax import data
print(json.dumps({
    "core": core,
    "lazy_before": lazy_before,
    "after": sorted({m.split(".")[0] for m in sys.modules}),
    "data_is_module": data is sys.modules["mlf_jax.data"],
    "dir": "train" in dir(mj) and "data" in dir(mj),
}))
"""


def test_import_loads_the_core_only_and_the_rest_on_first_use():
    done = subprocess.run(
        [sys.executable, "-c", _PROBE], cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert not set(out["core"]) & set(NOT_CORE), sorted(set(out["core"]) & set(NOT_CORE))
    assert {"jax", "flax", "numpy"} <= set(out["core"])
    assert out["lazy_before"] == []
    assert "orbax" in out["after"] and out["data_is_module"] and out["dir"]


def test_unknown_attributes_still_raise():
    done = subprocess.run(
        [sys.executable, "-c", "import mlf_jax; mlf_jax.nope"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 1 and "has no attribute 'nope'" in done.stderr
