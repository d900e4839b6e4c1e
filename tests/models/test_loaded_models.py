"""What a researcher does right after loading a shipped model: fine-tune it and analyse it in
train mode on one device, read each layer's learned thresholds, feed it raw images."""

from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import mlf_jax as mj

WEIGHTS = Path(__file__).resolve().parents[2] / "experiments" / "weights"


@pytest.fixture(scope="module")
def main():
    """The shipped main model (it learns its thresholds) and a batch of inputs."""
    model, variables, info = mj.models.load(WEIGHTS / "fashion_mnist_main.msgpack")
    x = jax.random.normal(jax.random.key(0), (8, 28, 28, 1))
    return model, variables, info, x


def test_a_loaded_model_trains_and_is_analysed_on_one_device(main):
    model, variables, _, x = main
    assert model.axis_name is None  # the run's device axis is not part of the model
    out, updates = model.apply(variables, x, train=True, mutable=["batch_stats"])
    assert out.shape == (8, 10) and "batch_stats" in updates
    _, recs = mj.analysis.record(model, variables, x, train=True)
    assert len(recs) == 9
    norms = mj.analysis.activation_grad_norms(model, variables, x, jnp.zeros(8, int), train=True)
    assert len(norms) == 9


def test_a_saved_sidecar_says_what_the_model_is_not_how_a_run_parallelised(tmp_path):
    model = mj.models.resnet(8, widths=(2, 2, 2), time_steps=1, axis_name="data")
    variables = jax.jit(model.init)(jax.random.key(0), jnp.zeros((1, 8, 8, 1)))
    assert "axis_name" not in mj.models.spec_of(model)
    loaded, *_ = mj.models.load(mj.models.save(tmp_path / "net", model, variables))
    assert loaded == model.clone(axis_name=None)
    # an older sidecar that recorded the run's axis loads without it
    spec = {**mj.models.spec_of(model), "axis_name": "data"}
    assert mj.models.from_spec(spec).axis_name is None


def _softplus(v):
    return np.log1p(np.exp(np.asarray(v, np.float64)))


def test_each_layer_record_holds_its_learned_thresholds(main):
    model, variables, _, x = main
    _, recs = mj.analysis.record(model, variables, x)
    for name, rec in recs.items():
        params = variables["params"]
        for key in name.split("/"):
            params = params[key]
        by_hand = np.cumsum(_softplus(params["thresholds_raw"]))  # first plus positive gaps
        np.testing.assert_allclose(rec.model.level_thresholds(), by_hand, rtol=1e-5)
        assert not np.allclose(by_hand, (0.6, 1.6, 2.6), atol=0.01)  # they did move


def test_dormant_fractions_use_each_layers_learned_thresholds(main):
    model, variables, _, x = main
    _, recs = mj.analysis.record(model, variables, x)
    got = mj.analysis.dormant_fractions(recs)
    for name, rec in recs.items():
        th = np.asarray(rec.model.level_thresholds())
        u = np.asarray(rec.membrane, np.float64)  # [T, K, B, ...]; rectangular, width 1
        inside = np.abs(u - th.reshape((1, -1) + (1,) * (u.ndim - 2))) < 0.5
        by_hand = np.mean(~inside.any(axis=1))
        assert got[name] == pytest.approx(by_hand, abs=1e-6), name
    with pytest.raises(ValueError, match="computes with thresholds .* not \\(0.6, 1.6, 2.6\\)"):
        mj.analysis.dormant_fractions(recs, (0.6, 1.6, 2.6), mj.rectangular(1.0))
    collected = {k: r._replace(model=None) for k, r in recs.items()}
    with pytest.raises(ValueError, match="holds no neuron model"):
        mj.analysis.dormant_fractions(collected)


def test_with_params_decodes_what_a_layer_learned():
    mlf = mj.zoo.MLF(learn_tau=True, learn_thresholds=True)
    raw, logit = np.array([-0.5, 0.2, 1.0]), 0.7
    bound = mlf.with_params({"thresholds_raw": raw, "tau_logit": logit})
    np.testing.assert_allclose(bound.thresholds, np.cumsum(_softplus(raw)), rtol=1e-6)
    assert bound.tau == pytest.approx(1 / (1 + np.exp(-logit)), rel=1e-6)
    assert bound.learned == () and bound.surrogate == mlf.surrogate
    alif = mj.zoo.AdaptiveLIF().with_params({"beta": 0.3})
    assert alif.beta == pytest.approx(0.3) and alif.rho == mj.zoo.AdaptiveLIF().rho


def test_raw_pixels_are_refused_and_preprocess_applies_the_sidecar(main):
    model, variables, info, _ = main
    pixels = np.random.default_rng(0).integers(0, 256, (4, 28, 28, 1), dtype=np.uint8)
    with pytest.raises(TypeError, match="got dtype uint8: .*mj.models.preprocess"):
        model.apply(variables, pixels)
    by_hand = (pixels / 255.0 - 0.286) / 0.353  # the sidecar's words, by hand
    np.testing.assert_allclose(mj.models.preprocess(pixels, info), by_hand, rtol=1e-5, atol=1e-5)
    one = mj.models.preprocess(pixels[0], info)
    assert one.shape == (1, 28, 28, 1)
    with pytest.raises(ValueError, match=r"expected images of shape \[B, 28, 28, 1\]"):
        mj.models.preprocess(pixels[..., 0], info)
    legacy = {k: v for k, v in info["input"].items() if k != "peak"}  # older sidecars
    np.testing.assert_allclose(mj.models.preprocess(pixels, legacy), by_hand, atol=1e-5)
    with pytest.raises(ValueError, match="no input description"):
        mj.models.preprocess(pixels, {})


@pytest.mark.parametrize("name", sorted(mj.zoo.ZOO))
def test_every_zoo_neuron_saves_and_loads(tmp_path, name):
    model = mj.models.resnet(8, widths=(2, 2, 2), time_steps=2, neuron=mj.zoo.ZOO[name]())
    x = jax.random.normal(jax.random.key(1), (2, 8, 8, 1))
    variables = jax.jit(model.init)(jax.random.key(0), x)
    loaded, loaded_vars, _ = mj.models.load(mj.models.save(tmp_path / name, model, variables))
    assert loaded == model
    np.testing.assert_array_equal(loaded.apply(loaded_vars, x), model.apply(variables, x))


def test_membrane_plots_of_a_record_use_the_layers_learned_thresholds(main):
    pytest.importorskip("matplotlib")
    model, variables, _, x = main
    _, recs = mj.analysis.record(model, variables, x)
    rec = recs["stem_neuron"]
    ax = mj.plot.membrane(rec, unit=0)
    drawn = [line.get_ydata()[0] for line in ax.lines if line.get_gid() == "threshold"]
    np.testing.assert_allclose(drawn, rec.model.level_thresholds(), rtol=1e-6)
    windows = [p for p in ax.patches if p.get_gid() == "surrogate_window"]
    assert len(windows) == 3  # the model's rectangular surrogate, shaded per level
    with pytest.raises(ValueError, match="thresholds are needed"):
        mj.plot.membrane(rec.membrane)


def test_a_source_gives_a_whole_array_by_name():
    from mlf_jax.data import ArraySource

    src = ArraySource({"image": np.zeros((3, 2)), "label": np.arange(3)})
    np.testing.assert_array_equal(src["label"], np.arange(3))
    assert set(src[1]) == {"image", "label"}
    with pytest.raises(KeyError, match="no array 'images'; this source holds"):
        src["images"]
