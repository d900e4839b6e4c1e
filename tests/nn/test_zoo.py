"""The Linen layer of the zoo (mj.nn.Neuron): parameters, recording, the ResNet."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import mlf_jax as mj


def _x(shape=(5, 2, 6), seed=0):
    return jax.random.uniform(jax.random.key(seed), shape, minval=-0.5, maxval=3.0)


def test_without_learned_parameters_it_is_the_pure_model():
    x = _x()
    for model in (mj.zoo.IF(), mj.zoo.LIF(tau=0.5), mj.zoo.MLF(), mj.zoo.AdaptiveLIF()):
        layer = mj.nn.Neuron(model=model)
        v = layer.init(jax.random.key(1), x)
        assert not jax.tree.leaves(v)
        np.testing.assert_array_equal(layer.apply(v, x), model(x))
    # the LIF layer is the library's LIF
    np.testing.assert_array_equal(
        mj.nn.Neuron(model=mj.zoo.LIF(tau=0.5)).apply({}, x), mj.lif(x, tau=0.5)
    )


def test_plif_learns_its_leak_by_default_and_other_parameters_on_request():
    x = _x()
    plif = mj.zoo.PLIF(tau=0.4)
    params = mj.nn.Neuron(model=plif).init(jax.random.key(1), x)["params"]
    assert set(params) == {"tau_logit"}
    np.testing.assert_allclose(jax.nn.sigmoid(params["tau_logit"]), 0.4, rtol=1e-6)
    assert not jax.tree.leaves(mj.nn.Neuron(model=plif, learn=()).init(jax.random.key(1), x))
    alif = mj.nn.Neuron(model=mj.zoo.AdaptiveLIF(beta=0.3), learn=("beta", "rho"))
    params = alif.init(jax.random.key(1), x)["params"]
    np.testing.assert_allclose([params["beta"], params["rho"]], [0.3, 0.8], rtol=1e-6)


def test_learned_parameter_gradients_are_the_pure_models():
    x = _x((6, 3, 8), seed=2)
    w = jax.random.normal(jax.random.key(3), x.shape)
    model = mj.zoo.AdaptiveLIF(surrogate=mj.sigmoid(3.0))
    layer = mj.nn.Neuron(model=model, learn=("threshold", "beta"))
    params = layer.init(jax.random.key(1), x)["params"]
    g_layer = jax.grad(lambda p: (layer.apply({"params": p}, x) * w).sum())(params)
    g_pure = jax.grad(lambda p: (model(x, p) * w).sum())(
        {"threshold": jnp.float32(0.6), "beta": jnp.float32(0.5)}
    )
    for name in ("threshold", "beta"):
        np.testing.assert_allclose(g_layer[name], g_pure[name], rtol=1e-6)
        assert abs(float(g_layer[name])) > 1e-3


def test_recording_sows_per_level_potentials_and_spikes():
    x = _x()
    model = mj.zoo.AdaptiveLIF()
    out, state = mj.nn.Neuron(model=model).apply({}, x, mutable=[mj.nn.RECORD_COLLECTION])
    (u,) = state[mj.nn.RECORD_COLLECTION]["membrane"]
    (spikes,) = state[mj.nn.RECORD_COLLECTION]["spikes"]
    _, states = model(x, return_states=True)
    assert u.shape == (5, 1, 2, 6)  # [T, K, B, N]
    np.testing.assert_allclose(u[:, 0], states.u - states.b, rtol=1e-6)
    np.testing.assert_array_equal(spikes, out)
    _, state = mj.nn.Neuron(model=mj.zoo.MLF()).apply({}, x, mutable=[mj.nn.RECORD_COLLECTION])
    (u,) = state[mj.nn.RECORD_COLLECTION]["membrane"]
    _, ref = mj.mlf(x, return_potential=True)
    np.testing.assert_allclose(u, ref, rtol=1e-6)


def test_a_zoo_neuron_in_the_resnet_records_and_learns_per_layer():
    kw = dict(widths=(4, 4, 4), num_classes=3, time_steps=2, in_channels=1)
    x = jax.random.normal(jax.random.key(0), (2, 8, 8, 1))
    neuron = functools.partial(mj.nn.Neuron, model=mj.zoo.PLIF())
    model = mj.models.resnet(8, neuron=neuron, **kw)
    v = model.init(jax.random.key(1), x, train=False)
    _, state = model.apply(v, x, train=False, mutable=[mj.nn.RECORD_COLLECTION])
    records = mj.analysis.collect(state)
    # stem, two neurons per block, the shortcut neurons of stages 2 and 3; each one leak
    assert len(records) == 9 and all(r.membrane.shape[1] == 1 for r in records.values())
    for name in records:
        node = v["params"]
        for part in name.split("/"):
            node = node[part]
        assert set(node) == {"tau_logit"}, name


def test_bad_layers_are_named():
    with pytest.raises(ValueError, match="Neuron.learn names \\['gamma'\\]"):
        mj.nn.Neuron(model=mj.zoo.LIF(), learn=("gamma",)).init(jax.random.key(0), _x())
    with pytest.raises(TypeError, match="Neuron.model must be a mlf_jax.zoo.NeuronModel"):
        mj.nn.Neuron(model=mj.lif).init(jax.random.key(0), _x())
    with pytest.raises(ValueError, match=r"\[T, B, \.\.\.\]"):
        mj.nn.Neuron().init(jax.random.key(0), jnp.ones(3))


def test_the_mlf_layer_is_the_neuron_layer_running_the_zoo_mlf():
    x = _x((4, 3, 5), seed=4)
    kw = dict(thresholds=(0.5, 1.2), tau=0.3, learn_tau=True, learn_thresholds=True)
    preset = mj.nn.MLF(**kw)
    generic = mj.nn.Neuron(model=mj.zoo.MLF(**kw))
    assert type(preset) is type(generic) is mj.nn.Neuron and preset == generic  # one class
    v = preset.init(jax.random.key(0), x)
    assert jax.tree.map(jnp.shape, v) == jax.tree.map(jnp.shape, generic.init(jax.random.key(0), x))
    assert set(v["params"]) == {"tau_logit", "thresholds_raw"}  # the names shipped weights use
    # at initialisation both compute the pure function at the initial constants
    ref = mj.mlf(x, thresholds=(0.5, 1.2), tau=0.3)
    for layer in (preset, generic):
        np.testing.assert_array_equal(layer.apply(v, x), ref)
        g = jax.grad(lambda x_, layer=layer: (layer.apply(v, x_) ** 2).sum())(x)
        g_ref = jax.grad(lambda x_: (mj.mlf(x_, thresholds=(0.5, 1.2), tau=0.3) ** 2).sum())(x)
        np.testing.assert_allclose(g, g_ref, rtol=1e-5, atol=1e-6)


def test_zoo_mlf_and_lif_compute_with_their_impl():
    x = _x((12, 2, 6), seed=5)  # T = 12: 'auto' picks the fused kernel on CPU
    for make in (mj.zoo.MLF, mj.zoo.LIF):
        outs = {}
        for impl in ("scan", "fused", "auto"):
            model = make(impl=impl)
            f = jax.jit(lambda x_, model=model: (model(x_) * jnp.arange(6.0)).sum())
            outs[impl] = (model(x), jax.grad(f)(x))
        for impl in ("fused", "auto"):
            np.testing.assert_array_equal(outs[impl][0], outs["scan"][0])
            np.testing.assert_allclose(outs[impl][1], outs["scan"][1], rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="unknown impl 'fast'"):
        mj.zoo.MLF(impl="fast")


def test_plif_is_the_lif_with_a_learned_leak():
    assert mj.zoo.PLIF(tau=0.4) == mj.zoo.PLIF(tau=0.4, learn_tau=True)
    assert mj.zoo.PLIF().learned == mj.zoo.LIF(learn_tau=True).learned == ("tau_logit",)
    assert mj.zoo.LIF().learned == () and mj.zoo.MLF(learn_thresholds=True).learned == (
        "thresholds_raw",
    )
    x = _x()
    np.testing.assert_array_equal(mj.zoo.PLIF(tau=0.4)(x), mj.lif(x, tau=0.4))


def test_the_resnet_takes_a_neuron_model():
    kw = dict(widths=(4, 4, 4), num_classes=3, time_steps=2, in_channels=1)
    x = jax.random.normal(jax.random.key(0), (2, 8, 8, 1))
    plif = mj.zoo.PLIF(tau=0.3)
    model = mj.models.resnet(8, neuron=plif, **kw)
    factory = mj.models.resnet(8, neuron=functools.partial(mj.nn.Neuron, model=plif), **kw)
    v = model.init(jax.random.key(1), x, train=False)
    np.testing.assert_array_equal(model.apply(v, x), factory.apply(v, x))
    assert model.neuron_model() is plif and factory.neuron_model() is None
    default = mj.models.resnet(8, thresholds=(0.4, 1.0), tau=0.5, **kw).neuron_model()
    assert default == mj.zoo.MLF(thresholds=(0.4, 1.0), tau=0.5)
    # every zoo neuron says its levels, what the dormant-unit analysis needs
    alif = mj.zoo.AdaptiveLIF(threshold=0.7, surrogate=mj.triangle(0.5))
    assert alif.level_thresholds() == (0.7,)
    np.testing.assert_allclose(
        mj.zoo.MLF(learn_thresholds=True).level_thresholds(), (0.6, 1.6, 2.6)
    )


def test_the_mlf_preset_refuses_a_setting_mlf_has_not():
    with pytest.raises(TypeError, match="threshold"):
        mj.nn.MLF(threshold=0.5)


def test_the_blocks_and_the_resnet_run_the_one_neuron_layer():
    """BasicBlock's default neuron and every ResNet neuron position are ``nn.Neuron`` running
    the paper's MLF; no other layer class is left."""
    assert mj.nn.NEURON_LAYERS == (mj.nn.Neuron,)
    assert mj.nn.BasicBlock(4).neuron is mj.nn.Neuron
    assert mj.nn.Neuron().model == mj.zoo.MLF() == mj.models.resnet(8).neuron
    model = mj.models.resnet(8, widths=(2, 2, 2), time_steps=1)
    x = jnp.zeros((1, 4, 4, 1))
    variables = model.init(jax.random.key(0), x)
    layers = []
    model.apply(variables, x, capture_intermediates=lambda m, _: layers.append(type(m)) or False)
    assert layers.count(mj.nn.Neuron) == 9  # stem, two per block, shortcuts of stages 2 and 3


def test_mlf_default_thresholds_are_written_once():
    """Every default of MLF's thresholds is the one constant of mlf_jax.thresholds."""
    import inspect

    from mlf_jax.kernels import mlf_fused, mlf_pallas
    from mlf_jax.thresholds import DEFAULT_THRESHOLDS

    assert DEFAULT_THRESHOLDS == (0.6, 1.6, 2.6)  # the paper's, by hand
    for fn in (mj.mlf, mj.mlf_step, mlf_fused, mlf_pallas):
        assert inspect.signature(fn).parameters["thresholds"].default is DEFAULT_THRESHOLDS
    assert mj.zoo.MLF.__dataclass_fields__["thresholds"].default is DEFAULT_THRESHOLDS
    assert mj.nn.MLF().model.thresholds == mj.models.resnet(8).neuron.thresholds
    assert mj.models.resnet(8).neuron.thresholds == DEFAULT_THRESHOLDS
