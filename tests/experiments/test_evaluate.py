"""``experiments.evaluate`` and ``experiments.export`` on a tiny run trained on digits.

The evaluation is checked against an independent computation (``model.apply`` over the
whole test set at once, numpy for the counts); the command lines run as subprocesses, all
at once, to keep the file fast.
"""

import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import pytest
from flax import serialization, traverse_util
from PIL import Image

import mlf_jax as mj
from experiments import evaluate as evaluate_module
from experiments import export, trainer
from experiments.configs import digits as digits_config
from experiments.configs import fashion_mnist as fmnist_config
from experiments.models import build_model
from mlf_jax.data import digits

ROOT = Path(__file__).resolve().parents[2]
OVERRIDES = ["--config.model.widths=(4,8,8)", "--config.model.time_steps=1"]
BATCH = 100  # does not divide the 360 test examples: the last batch is partial


def _config(**model):
    config = digits_config.get_config()
    config.model.widths = (4, 8, 8)
    config.model.time_steps = 1
    config.batch_size = 64
    config.eval_batch_size = BATCH
    config.num_epochs = 1
    config.log_every = 22
    config.model.update(model)
    return config


def _restore(path):
    return serialization.msgpack_restore(Path(path).read_bytes())


def _flat(tree):
    return traverse_util.flatten_dict(tree, sep="/")


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A finished one-epoch run, its exported weights, and the reference evaluation."""
    tmp = tmp_path_factory.mktemp("evaluate")
    config = _config()
    results = trainer.train_and_evaluate(config, str(tmp / "run"))
    results.pop("state")
    sidecar = export.export(tmp / "run", config, tmp / "out" / "tiny")
    final = _restore(tmp / "run" / trainer.FINAL_VARIABLES)
    # the reference: one forward pass over all images of a split, counted with numpy
    classify = jax.jit(lambda v, x: build_model(config).apply(v, x, train=False))

    def predicted_and_labels(split):
        images, labels = digits.arrays(split)
        logits = classify(final, digits.normalize(images))
        return np.argmax(np.asarray(logits), -1), labels

    predicted, labels = predicted_and_labels("test")
    confusion = np.bincount(labels * 10 + predicted, minlength=100).reshape(10, 10)
    reference = {
        "accuracy": float(np.mean(predicted == labels)),
        "per_class": [float(np.mean(predicted[labels == c] == c)) for c in range(10)],
        "confusion": confusion,
        "n": len(labels),
    }
    # and over the training images, unaugmented
    train_predicted, train_labels = predicted_and_labels("train")
    reference["train_accuracy"] = float(np.mean(train_predicted == train_labels))
    reference["train_n"] = len(train_labels)
    return {
        "tmp": tmp,
        "config": config,
        "results": results,
        "sidecar": sidecar,
        "final": final,
        "reference": reference,
    }


def _bad_files(run):
    """Weights files that the command line must refuse: ``name -> path``."""
    tmp, final = run["tmp"] / "bad", run["final"]
    tmp.mkdir()
    files = {}
    # another width: (8, 8, 8) instead of (4, 8, 8), zeros of the right structure
    other = _config(widths=(8, 8, 8))
    x = jax.ShapeDtypeStruct((1, 8, 8, 1), np.float32)
    shapes = jax.eval_shape(
        lambda r, x: build_model(other).init(r, x, train=False), jax.random.key(0), x
    )
    wide = jax.tree.map(lambda s: np.zeros(s.shape, s.dtype), shapes)
    files["width"] = tmp / "wide.msgpack"
    files["width"].write_bytes(serialization.to_bytes(wide))
    headless = {"params": dict(final["params"]), "batch_stats": final["batch_stats"]}
    del headless["params"]["head"]
    files["missing_layer"] = tmp / "headless.msgpack"
    files["missing_layer"].write_bytes(serialization.to_bytes(headless))
    raw = (run["tmp"] / "out" / "tiny.msgpack").read_bytes()
    files["truncated"] = tmp / "truncated.msgpack"
    files["truncated"].write_bytes(raw[: len(raw) // 2])
    files["missing_file"] = tmp / "nowhere.msgpack"
    # the same weights with a sidecar that says T = 2: shapes fit, the network differs
    files["sidecar"] = tmp / "t2.msgpack"
    files["sidecar"].write_bytes(raw)
    record = dict(run["sidecar"], model=dict(run["sidecar"]["model"], time_steps=2))
    (tmp / "t2.json").write_text(json.dumps(record))
    return files


@pytest.fixture(scope="module")
def cli(run):
    """Every command-line run of the file, started together: ``name -> CompletedProcess``."""
    tmp = run["tmp"]
    env = {**os.environ, "MLF_JAX_ALLOCATOR": "system", "JAX_PLATFORMS": "cpu"}
    common = [
        "--config=experiments/configs/digits.py",
        *OVERRIDES,
        f"--config.compilation_cache_dir={jax.config.jax_compilation_cache_dir}",
    ]
    evaluate = [sys.executable, "-m", "experiments.evaluate", *common]
    commands = {
        "ok": [
            *evaluate,
            f"--weights={tmp / 'out' / 'tiny.msgpack'}",
            f"--batch_size={BATCH}",
            f"--confusion_plot={tmp / 'plots' / 'confusion.png'}",
            f"--json_out={tmp / 'eval.json'}",
        ],
        "train_split": [
            *evaluate,
            f"--weights={tmp / 'out' / 'tiny.msgpack'}",
            f"--batch_size={BATCH}",
            "--split=train",
        ],
        "bad_split": [*evaluate, f"--weights={tmp / 'out' / 'tiny.msgpack'}", "--split=val"],
        "export": [
            sys.executable,
            "-m",
            "experiments.export",
            *common,
            f"--workdir={tmp / 'run'}",
            f"--out={tmp / 'cli_out' / 'tiny'}",
        ],  # fmt: skip
    }
    for name, path in _bad_files(run).items():
        commands[name] = [*evaluate, f"--weights={path}"]
    procs = {
        name: subprocess.Popen(
            cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        for name, cmd in commands.items()
    }
    out = {}
    for name, proc in procs.items():
        stdout, stderr = proc.communicate(timeout=300)
        out[name] = subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr)
    return out


def test_cli_matches_an_independent_evaluation(run, cli):
    result = cli["ok"]
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)  # stdout is the JSON and nothing else
    ref = run["reference"]
    assert ref["n"] % BATCH != 0
    assert out["num_examples"] == ref["n"] == 360
    assert out["test_accuracy"] == pytest.approx(ref["accuracy"], abs=1e-12)
    assert list(out["per_class_accuracy"]) == [str(c) for c in range(10)]
    np.testing.assert_allclose(list(out["per_class_accuracy"].values()), ref["per_class"])
    np.testing.assert_array_equal(np.array(out["confusion_matrix"]), ref["confusion"])
    # the training's own evaluation (on two devices) agrees too
    assert out["test_accuracy"] == pytest.approx(run["results"]["final_test_accuracy"])
    assert out["weights"].endswith("tiny.msgpack")
    assert out["config"] == "experiments/configs/digits.py"
    assert out["config_overrides"] == OVERRIDES + [
        f"--config.compilation_cache_dir={jax.config.jax_compilation_cache_dir}"
    ]
    assert "360/360" in result.stderr  # the progress bar, on stderr
    assert json.loads((run["tmp"] / "eval.json").read_text()) == out


def test_train_split_matches_an_independent_evaluation(run, cli):
    result = cli["train_split"]
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    ref = run["reference"]
    assert out["split"] == "train" and "test_accuracy" not in out
    assert out["num_examples"] == ref["train_n"] > ref["n"]
    assert out["train_accuracy"] == pytest.approx(ref["train_accuracy"], abs=1e-12)
    assert json.loads(cli["ok"].stdout)["split"] == "test"


def test_an_unknown_split_is_refused_in_one_line(cli):
    result = cli["bad_split"]
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert "--split" in result.stderr and "val" in result.stderr


def test_confusion_plot_is_a_png(run, cli):
    assert cli["ok"].returncode == 0, cli["ok"].stderr
    path = run["tmp"] / "plots" / "confusion.png"
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with Image.open(path) as image:
        assert image.format == "PNG" and min(image.size) > 300


def _one_error_line(result):
    assert result.returncode == 1, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    lines = [x for x in result.stderr.splitlines() if x.startswith("error:")]
    assert len(lines) == 1, result.stderr
    assert result.stdout == ""
    return lines[0]


@pytest.mark.parametrize(
    "case, expected",
    [
        (
            "width",
            r"weights do not fit the config: params/\S+ has shape \(3, 3, \d+, 8\) in \S+"
            r"wide.msgpack but the config's model expects \(3, 3, \d+, 4\)",
        ),
        ("missing_layer", r"headless.msgpack lacks params/head, which the config's model has"),
        ("truncated", r"truncated.msgpack is not a flax msgpack of variables: .*truncated"),
        ("missing_file", r"weights file \S+nowhere.msgpack does not exist"),
        (
            "sidecar",
            r"settings differ from the config \(\S+t2.json\): model.time_steps: 2 in the "
            r"weights' settings, 1 in the config",
        ),
    ],
)
def test_cli_refuses_bad_weights_in_one_line(cli, case, expected):
    assert re.search(expected, _one_error_line(cli[case]))


def test_width_error_names_the_stem_layer_and_both_shapes(cli):
    line = _one_error_line(cli["width"])
    assert "params/stem_conv/kernel has shape (3, 3, 1, 8)" in line
    assert "expects (3, 3, 1, 4)" in line


def test_export_round_trip_is_bit_identical(run):
    out = run["tmp"] / "out" / "tiny.msgpack"
    assert set(_restore(out)) == {"params", "batch_stats"}  # no optimiser or training state
    loaded = export.load(out, run["config"])
    want, got = _flat(run["final"]), _flat(loaded)
    assert set(got) == set(want) and "params/head/kernel" in got
    for key, array in want.items():
        assert got[key].dtype == array.dtype and got[key].shape == array.shape, key
        assert got[key].tobytes() == array.tobytes(), key


def test_sidecar_records_what_the_weights_are(run, cli):
    side = json.loads((run["tmp"] / "out" / "tiny.json").read_text())
    raw = (run["tmp"] / "out" / "tiny.msgpack").read_bytes()
    assert side["sha256"] == hashlib.sha256(raw).hexdigest()
    assert side["dataset"] == "digits"
    assert side["model"] == json.loads(json.dumps(run["config"].model.to_dict()))
    n = sum(a.size for k, a in _flat(run["final"]).items() if k.startswith("params/"))
    assert side["num_params"] == n == run["results"]["num_params"]
    assert side["results"]["final_test_accuracy"] == run["results"]["final_test_accuracy"]
    assert side["input"]["shape"] == [8, 8, 1] and side["input"]["time_steps"] == 1
    assert side["versions"]["jax"] == jax.__version__ and side["versions"]["flax"]
    # the command line writes the same file
    assert cli["export"].returncode == 0, cli["export"].stderr
    assert (run["tmp"] / "cli_out" / "tiny.msgpack").read_bytes() == raw
    assert json.loads(cli["export"].stdout)["sha256"] == side["sha256"]


def test_exported_weights_load_with_the_library_alone(run):
    """export writes through mlf_jax.models.save: mlf_jax.models.load reads the files back
    without the config, as the model the config builds, with the same variables."""
    model, variables, info = mj.models.load(run["tmp"] / "out" / "tiny.msgpack")
    assert model == build_model(run["config"]).clone(axis_name=None)  # the run's axis is not kept
    assert info["class_names"] == export.class_names("digits") and info["dataset"] == "digits"
    want, got = _flat(run["final"]), _flat(variables)
    assert set(got) == set(want)
    assert all(got[k].tobytes() == np.asarray(a).tobytes() for k, a in want.items())


def test_a_run_without_results_json_is_refused_until_it_is_restored(run):
    """Which state the weights are is unknown without results.json (metrics.jsonl's last
    evaluation may be of a later, unfinished extension): refused, and the hint works."""
    src, dst = run["tmp"] / "run", run["tmp"] / "no_results"
    dst.mkdir()
    for name in (trainer.FINAL_VARIABLES, "metrics.jsonl", "config.json"):
        shutil.copy(src / name, dst / name)
    out = run["tmp"] / "out2" / "w.msgpack"
    with pytest.raises(export.WeightsError, match="has no results.json.*restore results.json"):
        export.export(dst, run["config"], out, {"note": "x"})
    shutil.copy(src / trainer.RESULTS, dst / trainer.RESULTS)  # as the hint says
    side = export.export(dst, run["config"], out, {"note": "x"})
    assert side["results"]["from"] == "results.json" and side["note"] == "x"
    assert side["results"]["final_test_accuracy"] == run["results"]["final_test_accuracy"]
    assert (run["tmp"] / "out2" / "w.msgpack").exists() and (
        run["tmp"] / "out2" / "w.json"
    ).exists()


def test_fashion_mnist_input_is_described():
    config = fmnist_config.get_config()
    d = export.input_description(config)
    assert d["shape"] == [28, 28, 1] and d["time_steps"] == config.model.time_steps == 1
    assert (d["mean"], d["std"]) == (0.2860, 0.3530)
    assert "x / 255" in d["normalization"] and d["encoding"].startswith("direct")
    assert export.class_names("fashion_mnist")[0] == "T-shirt/top"
    config.model.encoder = "rate"  # spike encoders get intensities, not normalised images
    d = export.input_description(config)
    assert d["normalization"] == "x / 255" and "mean" not in d and "std" not in d
    assert d["encoding"].startswith("rate: the intensity p in [0, 1]")


def _write(path, tree):
    path.write_bytes(serialization.to_bytes(tree))
    return path


def test_load_refuses_in_process(run, tmp_path):
    config, final = run["config"], run["final"]
    (tmp_path / "text.msgpack").write_text("hello world")
    with pytest.raises(export.WeightsError, match="text.msgpack is not a flax msgpack"):
        export.load(tmp_path / "text.msgpack", config)
    (tmp_path / "noise.msgpack").write_bytes(np.random.default_rng(0).bytes(500))
    with pytest.raises(export.WeightsError, match="noise.msgpack is not a flax msgpack"):
        export.load(tmp_path / "noise.msgpack", config)
    with pytest.raises(export.WeightsError, match=r"holds \['a'\], not"):
        export.load(_write(tmp_path / "a.msgpack", {"a": np.zeros(1)}), config)
    half = jax.tree.map(lambda a: a.astype(np.float16), final)
    with pytest.raises(export.WeightsError, match="has dtype float16 in .* expects float32"):
        export.load(_write(tmp_path / "half.msgpack", half), config)
    extra = {**final, "params": {**final["params"], "spare": {"kernel": np.zeros(2)}}}
    with pytest.raises(export.WeightsError, match="has params/spare, which the config's"):
        export.load(_write(tmp_path / "extra.msgpack", extra), config)
    nan = jax.tree.map(np.copy, final)
    nan["params"]["head"]["bias"][0] = np.nan
    with pytest.raises(export.WeightsError, match="NaN or infinite values in params/head/bias"):
        export.load(_write(tmp_path / "nan.msgpack", nan), config)
    # training state beside the variables is ignored
    with_opt = {**final, "opt_state": {"momentum": np.zeros(3)}, "step": 7}
    loaded = export.load(_write(tmp_path / "state.msgpack", with_opt), config)
    assert set(loaded) == {"params", "batch_stats"}


def test_load_refuses_a_stale_sidecar_and_a_config_that_is_not_the_run(run, tmp_path):
    shutil.copy(run["tmp"] / "out" / "tiny.json", tmp_path / "w.json")
    other = jax.tree.map(lambda a: a + 1, run["final"])
    with pytest.raises(export.WeightsError, match="sha256 differs"):
        export.load(_write(tmp_path / "w.msgpack", other), run["config"])
    # a run's own final variables are checked against its recorded config.json
    with pytest.raises(export.WeightsError, match="model.tau: 0.25 in the weights' settings"):
        export.load(run["tmp"] / "run" / trainer.FINAL_VARIABLES, _config(tau=0.5))
    with pytest.raises(export.WeightsError, match="model.tau: 0.25 in the run, 0.5 in"):
        export.export(run["tmp"] / "run", _config(tau=0.5), tmp_path / "never")
    with pytest.raises(export.WeightsError, match="holds no final_variables.msgpack"):
        export.export(tmp_path, run["config"], tmp_path / "never")


class _InterruptedInAGcCallback:
    """A Ctrl-C arriving while a garbage-collection callback runs: Python swallows the
    ``KeyboardInterrupt`` ("Exception ignored in ...")."""

    def __del__(self):
        evaluate_module._on_interrupt(signal.SIGINT, None)


def test_a_swallowed_ctrl_c_still_stops_the_evaluation(run, monkeypatch):
    monkeypatch.setattr(sys, "unraisablehook", lambda u: None)  # what Python does: ignore it
    evaluate_module._INTERRUPTED.clear()
    try:
        _InterruptedInAGcCallback()
        with pytest.raises(KeyboardInterrupt):
            evaluate_module.predict(run["config"], run["final"], batch_size=BATCH, progress=False)
    finally:
        evaluate_module._INTERRUPTED.clear()
