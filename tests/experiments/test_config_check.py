"""Config values checked up front: every shipped config passes, each bad value is named."""

import runpy
import subprocess
import sys
import time
from pathlib import Path

import pytest

from experiments import config_check

ROOT = Path(__file__).resolve().parents[2]
#: The training configs (the depth study's config describes a grid of them, not one run).
CONFIGS = sorted(
    p
    for p in (ROOT / "experiments" / "configs").glob("*.py")
    if p.stem not in ("__init__", "base", "depth_study")
)


def _config(**kw):
    config = runpy.run_path(str(ROOT / "experiments/configs/digits.py"))["get_config"]()
    for key, value in kw.items():
        node, leaf = (config.model, key[6:]) if key.startswith("model_") else (config, key)
        node[leaf] = value
    return config


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.stem)
def test_every_shipped_config_is_valid(path):
    config_check.validate(runpy.run_path(str(path))["get_config"]())


@pytest.mark.parametrize(
    "stem, preset",
    [
        ("cifar10", "cifar10_resnet20"),
        ("gesture", "gesture_resnet20"),
        ("cifar10dvs", "cifar10dvs_resnet14"),
    ],
)
def test_the_paper_configs_build_the_librarys_presets(stem, preset):
    """The experiments' paper runs and the library's presets are one model each (compared
    field by field, the surrogate's width included)."""
    import mlf_jax as mj
    from experiments.models import build_model

    config = runpy.run_path(str(ROOT / f"experiments/configs/{stem}.py"))["get_config"]()
    axis = mj.train.AXIS if config.cross_device_bn else None  # the training set-up's, not the net's
    assert build_model(config) == getattr(mj.models, preset)(axis_name=axis)


def test_a_model_key_the_resnet_has_not_is_named():
    from experiments.models import build_model

    config = _config()
    config.model.widht = 3
    config.model.num_classes = 5  # the data set's
    with pytest.raises(ValueError, match=r"does not take from it: \['num_classes', 'widht'\]"):
        build_model(config)


@pytest.mark.parametrize(
    "key, value, message",
    [
        ("keep_checkpoints", 0, "config.keep_checkpoints must be >= 1, got 0"),
        ("checkpoint_every_steps", -1, "config.checkpoint_every_steps must be >= 0, got -1"),
        ("batch_size", 0, "config.batch_size must be >= 1, got 0"),
        ("batch_size", -32, "config.batch_size must be >= 1, got -32"),
        ("eval_batch_size", 0, "config.eval_batch_size must be >= 1, got 0"),
        ("log_every", 0, "config.log_every must be >= 1, got 0"),
        ("learning_rate", -1.0, r"config.learning_rate must be in \(0.0, inf\), got -1.0"),
        ("learning_rate", float("nan"), "config.learning_rate must be finite"),
        ("momentum", 1.0, r"config.momentum must be in \[0.0, 1.0\), got 1.0"),
        ("num_epochs", 0, "config.num_epochs must be >= 1"),
        ("seed", -1, "config.seed must be >= 0"),
        ("schedule", "linear", "config.schedule must be one of step, cosine, constant"),
        ("parallel", "dp", "config.parallel must be one of shard_map, pmap"),
        ("augment", "blur", r"config.augment must be one of '' \(the default\), none, crop_flip"),
        ("dataset", "mnist", "config.dataset must be one of"),
        ("model_depth", 9, r"config.model.depth must be 6n \+ 2"),
        ("model_widths", (4, 4), "config.model.widths must be 3 positive integers"),
        ("model_widths", (4, 0, 4), "config.model.widths must be 3 positive integers"),
        ("model_thresholds", (0.6, -1.0), "config.model.thresholds must be positive"),
        ("model_thresholds", (1.6, 0.6), "config.model: thresholds must be strictly increasing"),
        ("model_thresholds", (), "config.model.thresholds must be a non-empty tuple"),
        ("model_time_steps", 0, "config.model.time_steps must be >= 1"),
        ("model_tau", 0.0, r"config.model.tau must be in \(0.0"),
        ("model_v_th", 0.0, r"config.model.v_th must be in \(0.0, inf\), got 0.0"),
        ("model_dtype", "float16", "config.model.dtype must be one of bfloat16, float32"),
        ("model_surrogate", "relu", "config.model.surrogate must be one of arctan"),
        ("model_conv_impl", "fft", "config.model.conv_impl must be one of auto, xla, im2col"),
        ("model_neuron_impl", "cuda", "config.model.neuron_impl must be one of auto, scan, fused"),
        ("model_encoder", "poisson", "config.model.encoder must be one of direct, rate, latency"),
    ],
)
def test_a_bad_value_is_named(key, value, message):
    with pytest.raises(config_check.ConfigError, match=message):
        config_check.validate(_config(**{key: value}))


def test_tdbn_scale_defaults_to_the_first_threshold_and_may_be_set():
    from experiments.models import build_model

    assert build_model(_config()).v_th is None  # the ResNet then scales to thresholds[0]
    config = _config(model_v_th=1.0)
    config_check.validate(config)
    assert build_model(config).v_th == 1.0


def test_a_learned_leak_needs_tau_below_one():
    config_check.validate(_config(model_learn_tau=True, model_tau=0.5))
    with pytest.raises(config_check.ConfigError, match=r"config.model: MLF tau must be strictly"):
        config_check.validate(_config(model_learn_tau=True, model_tau=1.0))


@pytest.mark.parametrize("encoder", ["rate", "latency"])
def test_spike_encoders_are_for_static_images_only(encoder):
    config_check.validate(_config(model_encoder=encoder))  # digits: static images
    with pytest.raises(config_check.ConfigError, match="'nmnist' is event data"):
        config_check.validate(_config(model_encoder=encoder, dataset="nmnist"))


def test_the_model_gets_the_new_keys_and_old_runs_resume_without_them():
    from experiments import models, run_identity

    config = _config(model_learn_tau=True, model_learn_thresholds=True, model_encoder="rate")
    model = models.build_model(config)
    assert (model.neuron.learn_tau, model.neuron.learn_thresholds) == (True, True)
    assert model.encoder == "rate"
    default = models.build_model(_config())
    assert (default.neuron.learn_tau, default.neuron.learn_thresholds) == (False, False)
    assert default.encoder == "direct"
    for key in ("model.learn_tau", "model.learn_thresholds", "model.encoder"):
        assert run_identity.ADDED[key] == run_identity.flatten(_config())[key]


def test_warmup_must_end_before_the_run():
    with pytest.raises(config_check.ConfigError, match="warmup_epochs .* below config.num_epochs"):
        config_check.validate(_config(warmup_epochs=5.0, num_epochs=5))


def test_several_bad_values_are_all_named():
    with pytest.raises(config_check.ConfigError) as e:
        config_check.validate(_config(batch_size=0, log_every=0))
    assert "config.batch_size" in str(e.value) and "config.log_every" in str(e.value)


def _train(*args, timeout=120):
    return subprocess.run(
        [sys.executable, "-m", "experiments.train", *args],
        cwd=ROOT, capture_output=True, text=True, timeout=timeout,
        env={"MLF_JAX_ALLOCATOR": "system", "PATH": "/usr/bin:/bin", "HOME": "/tmp"},
    )  # fmt: skip


@pytest.mark.parametrize(
    "args, message, form",
    [
        (["--config.batch_size=0"], "error: config.batch_size must be >= 1, got 0", "="),
        (["--config.learning_rate=-1"], "error: config.learning_rate must be in (0.0, inf)", " "),
        (["--config.num_epoch=3"], "unknown config key 'num_epoch'", " "),
    ],
)
def test_the_command_line_stops_with_one_line_before_any_work(tmp_path, args, message, form):
    config = "experiments/configs/digits.py"
    config_args = [f"--config={config}"] if form == "=" else ["--config", config]
    start = time.time()
    out = _train(*config_args, f"--workdir={tmp_path / 'w'}", *args)
    assert out.returncode == 1, out.stderr[-2000:]
    assert message in out.stderr and "Traceback" not in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1, out.stderr
    assert not (tmp_path / "w" / "checkpoints").exists()
    assert time.time() - start < 60  # long before anything is compiled


def test_a_missing_config_file_is_named(tmp_path):
    out = _train("--config=experiments/configs/nope.py", f"--workdir={tmp_path}")
    assert out.returncode == 1 and "config file 'experiments/configs/nope.py' does not exist" in (
        out.stderr
    )


@pytest.mark.parametrize(
    "content, message",
    [
        (None, "is not a file"),  # a directory
        ("def get_config(:\n", "fails to run: SyntaxError"),
        ("x = 1\n", "defines no get_config()"),
    ],
)
def test_a_broken_config_file_is_one_line(tmp_path, content, message):
    path = tmp_path / "cfg.py"
    if content is None:
        path.mkdir()
    else:
        path.write_text(content)
    out = _train(f"--config={path}", f"--workdir={tmp_path / 'w'}")
    assert out.returncode == 1 and message in out.stderr, out.stderr[-2000:]
    assert len(out.stderr.strip().splitlines()) == 1, out.stderr


def test_a_workdir_that_is_a_file_is_one_line(tmp_path):
    (tmp_path / "w").write_text("")
    out = _train("--config=experiments/configs/digits.py", f"--workdir={tmp_path / 'w'}")
    assert out.returncode == 1 and out.stderr.startswith("error: "), out.stderr[-2000:]
    assert "Traceback" not in out.stderr and str(tmp_path / "w") in out.stderr


def test_checking_a_config_starts_no_jax_backend():
    """A multi-host run checks its config before jax.distributed.initialize, which must
    come before any backend starts: asking the neuron model for its rules computes nothing."""
    code = (
        "import runpy, jax._src.xla_bridge as xb\n"
        "from experiments import config_check\n"
        "for stem in ('digits', 'gesture', 'cifar10dvs'):\n"
        "    c = runpy.run_path(f'experiments/configs/{stem}.py')['get_config']()\n"
        "    c.model.learn_thresholds = c.model.learn_tau = True\n"
        "    config_check.validate(c)\n"
        "print(sorted(xb._backends))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "[]"


@pytest.mark.parametrize("page", ["docs/guides/training.md"])
def test_every_training_config_is_in_the_docs_table(page):
    text = (ROOT / page).read_text()
    missing = [p.name for p in CONFIGS if f"| `{p.name}` |" not in text]
    assert not missing, f"{page}'s table of configs lacks {missing}"
