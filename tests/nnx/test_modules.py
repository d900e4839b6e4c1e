"""mlf_jax.nnx's layers and blocks compute, differentiate and update their statistics as
the Linen modules they run; modes, construction from Linen and back, and what is refused."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import mlf_jax as mj
import mlf_jax.nnx as mjx

from ._parity import check_same_as_linen

X = jax.random.uniform(jax.random.key(0), (5, 2, 6), minval=-0.5, maxval=3.0)


@pytest.mark.parametrize("name", sorted(mj.zoo.ZOO))
def test_every_zoo_neuron_learning_all_its_parameters_is_the_linen_layer(name):
    model = mj.zoo.ZOO[name]()
    layer = mjx.Neuron(model=model, learn=tuple(model.params()))
    assert sorted(nnx.to_pure_dict(nnx.state(layer, nnx.Param))) == sorted(model.params())
    check_same_as_linen(layer, X)


def test_the_mlf_preset_learns_its_thresholds_and_leak_as_params():
    layer = mjx.MLF(learn_tau=True, learn_thresholds=True, rngs=nnx.Rngs(0))
    assert isinstance(layer, mjx.Neuron) and layer.model == mj.zoo.MLF(
        learn_tau=True, learn_thresholds=True
    )
    state = nnx.state(layer, nnx.Param)
    assert sorted(nnx.to_pure_dict(state)) == ["tau_logit", "thresholds_raw"]
    np.testing.assert_allclose(layer.model_params()["tau_logit"], np.log(0.25 / 0.75), rtol=1e-6)
    check_same_as_linen(layer, X)
    plain = mjx.MLF()
    np.testing.assert_array_equal(plain(X), mj.mlf(X))  # no parameters: exactly mj.mlf
    assert nnx.to_pure_dict(nnx.state(plain)) == {}


def test_tdbn_updates_its_running_statistics_as_linen():
    x = jax.random.normal(jax.random.key(1), (2, 3, 4, 4, 5)) * 2 + 1
    bn = mjx.TdBatchNorm(5, v_th=0.6, momentum=0.8, rngs=nnx.Rngs(0))
    assert sorted(nnx.to_pure_dict(nnx.state(bn, nnx.BatchStat))) == ["mean", "var"]
    assert sorted(nnx.to_pure_dict(nnx.state(bn, nnx.Param))) == ["bias", "scale"]
    check_same_as_linen(bn, x)


@pytest.mark.parametrize("shortcut", ["ds", "standard"])
def test_a_projection_block_is_the_linen_block(shortcut):
    x = jax.random.normal(jax.random.key(2), (2, 2, 6, 6, 3))
    block = mjx.BasicBlock(
        3, 4, strides=2, shortcut=shortcut, neuron=mj.zoo.PLIF(), rngs=nnx.Rngs(1)
    )
    assert "tau_logit" in nnx.to_pure_dict(nnx.state(block, nnx.Param))["neuron1"]
    check_same_as_linen(block, x, atol=1e-6)


def test_train_and_eval_set_the_mode_everywhere_and_a_call_may_override_it():
    net = mjx.resnet(8, widths=(4, 4, 4), num_classes=3, time_steps=1, in_channels=1)
    assert net.use_running_average is False  # built in train mode, as nnx.BatchNorm
    x = jax.random.normal(jax.random.key(0), (4, 8, 8, 1))
    before = nnx.to_pure_dict(nnx.state(net, nnx.BatchStat))
    net.eval()
    assert net.use_running_average is True
    evaluated = net(x)
    unchanged = jax.tree.map(
        jnp.array_equal, nnx.to_pure_dict(nnx.state(net, nnx.BatchStat)), before
    )
    assert jax.tree.all(unchanged)
    trained = net(x, use_running_average=False)  # one call in train mode: statistics move
    assert not np.allclose(trained, evaluated)
    after = nnx.to_pure_dict(nnx.state(net, nnx.BatchStat))
    assert not np.allclose(after["stem_bn"]["mean"], before["stem_bn"]["mean"])
    net.train()
    assert net.use_running_average is False


def test_linen_variables_go_in_and_come_out_one_to_one():
    linen = mj.models.resnet(8, widths=(4, 4, 4), num_classes=3, time_steps=2, in_channels=2)
    x = jax.random.normal(jax.random.key(0), (2, 8, 8, 2))
    variables = linen.init(jax.random.key(3), x)
    net = mjx.from_linen(linen, variables, use_running_average=True)
    assert isinstance(net, mjx.ResNet) and net.linen_module == linen
    back_module, back = mjx.to_linen(net)
    assert back_module == linen
    jax.tree.map(np.testing.assert_array_equal, back, dict(variables))
    np.testing.assert_array_equal(net(x), linen.apply(variables, x))
    bad = jax.tree.map(lambda v: v, dict(variables))
    bad["params"] = {**bad["params"], "head": {"kernel": jnp.zeros((4, 5)), "bias": jnp.zeros(5)}}
    with pytest.raises(ValueError, match="head/bias is"):
        mjx.from_linen(linen, bad)


def test_from_linen_makes_each_module_and_drops_the_resnets_device_axis():
    net = mjx.from_linen(mj.models.resnet(8, widths=(4, 4, 4), in_channels=1, axis_name="batch"))
    assert net.linen_module.axis_name is None
    net(jnp.zeros((2, 8, 8, 1)))  # no unbound axis name outside shard_map
    assert isinstance(mjx.from_linen(mj.nn.MLF(learn_tau=True)), mjx.Neuron)
    assert isinstance(mjx.from_linen(mj.nn.TdBatchNorm(), in_features=3), mjx.TdBatchNorm)
    block = mjx.from_linen(mj.nn.BasicBlock(4), in_features=2)
    assert nnx.state(block, nnx.Param)["conv1"]["kernel"].shape == (3, 3, 2, 4)
    with pytest.raises(TypeError, match="no NNX module for Conv"):
        mjx.from_linen(mj.nn.conv3x3(3))  # type: ignore[arg-type]


def test_a_resnet_needs_its_input_channels():
    with pytest.raises(ValueError, match="give in_channels"):
        mjx.resnet(8, widths=(4, 4, 4))


def test_a_resnet_takes_the_mlf_settings_by_name_and_any_zoo_neuron():
    net = mjx.resnet(8, widths=(4, 4, 4), in_channels=1, thresholds=(0.6,), learn_tau=True)
    assert net.neuron_model() == mj.zoo.MLF(thresholds=(0.6,), learn_tau=True)
    plif = mjx.resnet(8, widths=(4, 4, 4), in_channels=1, neuron=mj.zoo.PLIF())
    assert "tau_logit" in nnx.to_pure_dict(nnx.state(plif))["stem_neuron"]
    with pytest.raises(ValueError, match="would ignore"):
        mjx.resnet(8, in_channels=1, neuron=mj.zoo.PLIF(), thresholds=(0.6,))


def test_a_rate_encoder_draws_new_spikes_at_each_training_call_from_the_encoder_stream():
    net = mjx.resnet(
        8, widths=(4, 4, 4), num_classes=3, time_steps=2, in_channels=1, encoder="rate",
        rngs=nnx.Rngs(0, encoder=7),
    )  # fmt: skip
    x = jnp.full((2, 8, 8, 1), 0.5)
    step = nnx.jit(lambda net, x: net(x))
    first, second = step(net, x), step(net, x)
    assert not np.allclose(first, second)
    net.eval()
    np.testing.assert_array_equal(step(net, x), step(net, x))  # eval: key(0), as in Linen


def test_only_the_package_modules_are_converted_back():
    with pytest.raises(TypeError, match="a module of mlf_jax.nnx"):
        mjx.to_linen(nnx.Linear(2, 2, rngs=nnx.Rngs(0)))


def test_a_neuron_layer_has_no_mode_and_ignores_train_and_eval():
    layer = mjx.MLF()
    layer.eval()
    layer.train()
    assert not hasattr(layer, "use_running_average")
    factory = functools.partial(mj.nn.Neuron, model=mj.zoo.IF())
    block = mjx.BasicBlock(2, 2, neuron=factory)
    assert block.linen_module.neuron is factory


def test_the_core_import_loads_neither_this_package_nor_flax_nnx():
    import subprocess
    import sys

    code = (
        "import sys, mlf_jax; "
        "print(sorted(m for m in ('mlf_jax.nnx', 'flax.nnx') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
