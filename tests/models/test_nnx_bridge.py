"""The Flax NNX recipe of the docs: our Linen layers and models through ``nnx.bridge.ToNNX``
compute, differentiate and update their batch statistics exactly as the Linen originals."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import mlf_jax as mj

nnx = pytest.importorskip("flax.nnx")


def test_a_neuron_layer_in_nnx_is_the_linen_layer():
    x = jax.random.uniform(jax.random.key(0), (5, 2, 6), minval=-0.5, maxval=3.0)
    layer = nnx.bridge.ToNNX(mj.nn.MLF(learn_tau=True), rngs=nnx.Rngs(0))
    nnx.bridge.lazy_init(layer, x)
    np.testing.assert_array_equal(layer(x), mj.mlf(x))
    g = nnx.grad(lambda m: (m(x) ** 2).sum())(layer)
    logit = jnp.log(0.25 / 0.75)
    g_ref = jax.grad(lambda w: (mj.mlf(x, tau=jax.nn.sigmoid(w)) ** 2).sum())(logit)
    np.testing.assert_allclose(nnx.to_pure_dict(g)["tau_logit"], g_ref, rtol=1e-5)


def test_a_resnet_trains_in_nnx_as_in_linen():
    x = jax.random.normal(jax.random.key(0), (4, 8, 8, 1))
    y = jnp.arange(4) % 3
    linen = mj.models.resnet(8, widths=(4, 4, 4), num_classes=3, time_steps=2, in_channels=1)
    net = nnx.bridge.ToNNX(linen, rngs=nnx.Rngs(0))
    nnx.bridge.lazy_init(net, x, train=False)
    variables = {
        "params": nnx.to_pure_dict(nnx.state(net, nnx.Param)),
        "batch_stats": nnx.to_pure_dict(nnx.state(net, nnx.BatchStat)),
    }
    np.testing.assert_array_equal(net(x), linen.apply(variables, x))

    optimizer = nnx.Optimizer(net, optax.sgd(0.1), wrt=nnx.Param)

    @nnx.jit
    def step(net, optimizer):
        def loss(net):
            return mj.losses.cross_entropy(net(x, train=True, mutable=["batch_stats"]), y)

        value, grads = nnx.value_and_grad(loss)(net)
        optimizer.update(net, grads)
        return value

    def linen_loss(params):
        out, updates = linen.apply(
            {"params": params, "batch_stats": variables["batch_stats"]},
            x,
            train=True,
            mutable=["batch_stats"],
        )
        return mj.losses.cross_entropy(out, y), updates["batch_stats"]

    (ref_loss, ref_stats), ref_grads = jax.value_and_grad(linen_loss, has_aux=True)(
        variables["params"]
    )
    np.testing.assert_allclose(step(net, optimizer), ref_loss, rtol=1e-6)
    ref_params = jax.tree.map(lambda p, g: p - 0.1 * g, variables["params"], ref_grads)
    for got, want in (
        (nnx.to_pure_dict(nnx.state(net, nnx.Param)), ref_params),
        (nnx.to_pure_dict(nnx.state(net, nnx.BatchStat)), ref_stats),
    ):
        jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7), got, want)


def test_mlf_jax_nnx_holds_the_raw_bridges_state_under_the_same_names():
    """``mlf_jax.nnx`` is this recipe packaged: a model built from the same Linen variables
    has the raw bridge's state, path for path, and computes its logits."""
    import mlf_jax.nnx as mjx

    x = jax.random.normal(jax.random.key(0), (2, 8, 8, 1))
    linen = mj.models.resnet(8, widths=(4, 4, 4), num_classes=3, time_steps=1, in_channels=1)
    raw = nnx.bridge.ToNNX(linen, rngs=nnx.Rngs(0))
    nnx.bridge.lazy_init(raw, x, train=False)
    variables = {
        "params": nnx.to_pure_dict(nnx.state(raw, nnx.Param)),
        "batch_stats": nnx.to_pure_dict(nnx.state(raw, nnx.BatchStat)),
    }
    packaged = mjx.from_linen(linen, variables, use_running_average=True)
    for kind in (nnx.Param, nnx.BatchStat):
        jax.tree.map(
            np.testing.assert_array_equal,
            nnx.to_pure_dict(nnx.state(packaged, kind)),
            nnx.to_pure_dict(nnx.state(raw, kind)),
        )
    np.testing.assert_array_equal(packaged(x), raw(x))
