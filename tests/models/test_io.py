"""mlf_jax.models.save / load: round trips, clear errors, and the shipped weights loaded
from a directory outside the repository (no experiment code)."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import mlf_jax as mj

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def small():
    model = mj.models.resnet(
        8, widths=(4, 4, 8), num_classes=3, time_steps=2, surrogate=mj.sigmoid(4.0), tau=0.5
    )
    variables = jax.jit(model.init)(jax.random.key(0), jnp.zeros((1, 8, 8, 1)))
    return model, variables


def test_round_trip_gives_the_same_model_numbers_and_info(tmp_path, small):
    model, variables = small
    path = mj.models.save(tmp_path / "net", model, variables, class_names=["a", "b", "c"])
    assert path == tmp_path / "net.msgpack" and (tmp_path / "net.json").is_file()
    loaded, loaded_vars, info = mj.models.load(tmp_path / "net.json")
    assert loaded == model  # every setting, the surrogate family and its parameter included
    x = jax.random.normal(jax.random.key(1), (2, 8, 8, 1))
    np.testing.assert_array_equal(model.apply(variables, x), loaded.apply(loaded_vars, x))
    # by hand: stem 44, stages 304 + 328 + 944, head 27 (see test_resnet.py's count)
    assert info["class_names"] == ["a", "b", "c"] and info["num_params"] == 1_647


def test_save_refuses_what_it_cannot_describe(tmp_path, small):
    model, variables = small
    with pytest.raises(ValueError, match="would replace computed ones"):
        mj.models.save(tmp_path / "x", model, variables, sha256="mine")
    with pytest.raises(ValueError, match="not JSON"):
        mj.models.save(tmp_path / "x", model, variables, note=object())
    with pytest.raises(ValueError, match="save to a local path"):
        mj.models.save("gs://bucket/net", model, variables)
    factory = model.clone(neuron=lambda **kw: mj.nn.Neuron(model=mj.zoo.PLIF()))
    with pytest.raises(ValueError, match="neuron is function .not a model of mlf_jax.zoo.ZOO"):
        mj.models.save(tmp_path / "x", factory, variables)
    wider = mj.models.resnet(8, widths=(4, 4, 16), num_classes=3, time_steps=2)
    with pytest.raises(ValueError, match=r"stage3_block1.*is \(.*\) but the model's is"):
        mj.models.save(tmp_path / "x", wider, variables)
    assert not list(tmp_path.iterdir())  # nothing written by a refused save


def test_load_names_the_file_that_is_wrong(tmp_path, small):
    model, variables = small
    path = mj.models.save(tmp_path / "net", model, variables)
    with pytest.raises(mj.models.ModelFileError, match="other.json: no such file"):
        mj.models.load(tmp_path / "other")
    data = bytearray(path.read_bytes())
    data[-1] ^= 1
    path.write_bytes(bytes(data))
    with pytest.raises(mj.models.ModelFileError, match=r"net.msgpack: its sha256 differs"):
        mj.models.load(path)
    (tmp_path / "net.json").write_text("{not json")
    with pytest.raises(mj.models.ModelFileError, match="net.json: not JSON"):
        mj.models.load(path)


_OUTSIDE = """
import importlib.util, json, sys
import numpy as np
import mlf_jax as mj
assert importlib.util.find_spec("experiments") is None  # no repository on the path
model, variables, info = mj.models.load(sys.argv[1])
x = np.load(sys.argv[2])
print(json.dumps({"logits": np.asarray(model.apply(variables, x)).tolist(),
                  "classes": info["class_names"]}))
"""


@pytest.mark.integration
def test_shipped_weights_load_outside_the_repository(tmp_path):
    from experiments import export
    from experiments.configs import fashion_mnist
    from experiments.models import build_model

    name = "fashion_mnist_main"
    for suffix in (".msgpack", ".json"):
        shutil.copy(ROOT / "experiments" / "weights" / f"{name}{suffix}", tmp_path)
    x = np.random.default_rng(0).normal(size=(3, 28, 28, 1)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    done = subprocess.run(
        [sys.executable, "-c", _OUTSIDE, f"{name}.msgpack", "x.npy"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    # the experiments' own path: the config's model and its weights loader
    config = fashion_mnist.get_config()
    variables = export.load(ROOT / "experiments" / "weights" / f"{name}.msgpack", config)
    want = build_model(config).apply(variables, x)
    np.testing.assert_allclose(out["logits"], want, rtol=1e-5, atol=1e-5)
    assert out["classes"][0] == "T-shirt/top"
