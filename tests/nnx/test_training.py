"""Training an mlf_jax.nnx model: nnx.Optimizer steps as mj.train.train_step's Linen steps,
Orbax checkpoints of the NNX state, and the weights files of mj.models in both directions."""

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
from flax import nnx

import mlf_jax as mj
import mlf_jax.nnx as mjx

from ._parity import assert_trees_close

SETTINGS = dict(widths=(4, 4, 4), num_classes=3, time_steps=2, in_channels=1, learn_thresholds=True)
X = jax.random.normal(jax.random.key(0), (4, 8, 8, 1))
Y = jnp.arange(4) % 3


_step = mjx.train_step


def test_optimizer_steps_are_the_linen_train_steps():
    net = mjx.resnet(8, rngs=nnx.Rngs(0), **SETTINGS)
    linen, variables = mjx.to_linen(net)
    tx = mj.train.sgd(0.1)
    state = mj.train.TrainState.create(
        apply_fn=linen.apply,
        params=variables["params"],
        tx=tx,
        batch_stats=variables["batch_stats"],
    )
    opt = nnx.Optimizer(net, tx, wrt=nnx.Param)
    step = nnx.jit(_step)
    linen_step = jax.jit(mj.train.train_step)
    net.train()
    for _ in range(3):  # momentum and weight decay in play
        loss = step(net, opt, X, Y)
        state, metrics = linen_step(state, {"image": X, "label": Y})
        np.testing.assert_allclose(loss, metrics["loss"], rtol=1e-5)
    _, now = mjx.to_linen(net)
    assert_trees_close(now["params"], state.params, rtol=1e-5, atol=1e-6)
    assert_trees_close(now["batch_stats"], state.batch_stats, rtol=1e-5, atol=1e-6)


def test_a_cached_partial_step_keeps_the_variables_and_matches_nnx_jit():
    nets = [mjx.resnet(8, rngs=nnx.Rngs(0), **SETTINGS) for _ in range(2)]
    opts = [nnx.Optimizer(n, mj.train.sgd(0.1), wrt=nnx.Param) for n in nets]
    mean = nnx.state(nets[0], nnx.BatchStat)["stem_bn"]["mean"]
    cached = nnx.cached_partial(nnx.jit(_step), nets[0], opts[0])
    step = nnx.jit(_step)
    for _ in range(2):  # the statistics are written into the same variables
        np.testing.assert_array_equal(cached(X, Y), step(nets[1], opts[1], X, Y))
    assert nnx.state(nets[0], nnx.BatchStat)["stem_bn"]["mean"] is mean
    jax.tree.map(
        np.testing.assert_array_equal,
        nnx.to_pure_dict(nnx.state(nets[0])),
        nnx.to_pure_dict(nnx.state(nets[1])),
    )


def test_an_orbax_checkpoint_of_model_and_optimizer_restores_both(tmp_path):
    net = mjx.resnet(8, rngs=nnx.Rngs(0), **SETTINGS)
    opt = nnx.Optimizer(net, mj.train.sgd(0.1), wrt=nnx.Param)
    nnx.jit(_step)(net, opt, X, Y)
    with ocp.StandardCheckpointer() as checkpointer:
        checkpointer.save(tmp_path / "step_1", nnx.state((net, opt)))

    # a fresh model and optimizer, only their shapes (nothing computed), then the saved state
    fresh_net, fresh_opt = nnx.eval_shape(
        lambda: (
            (m := mjx.resnet(8, rngs=nnx.Rngs(1), **SETTINGS)),
            nnx.Optimizer(m, mj.train.sgd(0.1), wrt=nnx.Param),
        )
    )
    abstract = nnx.state((fresh_net, fresh_opt))
    with ocp.StandardCheckpointer() as checkpointer:
        restored = checkpointer.restore(tmp_path / "step_1", abstract)
    nnx.update((fresh_net, fresh_opt), restored)
    jax.tree.map(
        np.testing.assert_array_equal,
        nnx.to_pure_dict(nnx.state((fresh_net, fresh_opt))),
        nnx.to_pure_dict(nnx.state((net, opt))),
    )
    net.eval()
    fresh_net.eval()
    np.testing.assert_array_equal(fresh_net(X), net(X))
    # and training goes on from there as it would have
    net.train()
    fresh_net.train()
    np.testing.assert_array_equal(
        nnx.jit(_step)(fresh_net, fresh_opt, X, Y), nnx.jit(_step)(net, opt, X, Y)
    )


def test_the_weights_files_go_both_ways(tmp_path):
    net = mjx.resnet(8, rngs=nnx.Rngs(0), **SETTINGS)
    net.train()
    net(X)  # statistics that differ from the initial ones
    net.eval()
    mjx.save(tmp_path / "nnx_model", net, input={"shape": [8, 8, 1]})
    linen, variables, info = mj.models.load(tmp_path / "nnx_model")  # the Linen loader
    assert info["input"] == {"shape": [8, 8, 1]}
    np.testing.assert_array_equal(linen.apply(variables, X), net(X))

    mj.models.save(tmp_path / "linen_model", linen, variables, class_names=["a", "b", "c"])
    loaded, info = mjx.load(tmp_path / "linen_model.msgpack")
    assert isinstance(loaded, mjx.ResNet) and loaded.use_running_average  # loaded to evaluate
    assert info["class_names"] == ["a", "b", "c"]
    np.testing.assert_array_equal(loaded(X), linen.apply(variables, X))
