"""Residual blocks against an independent reference, and Theorem 2 (identity mapping)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

import mlf_jax as mj
from mlf_jax.nn import BasicBlock


def _conv(x, kernel, stride, pad):
    T, B = x.shape[:2]
    y = lax.conv_general_dilated(
        x.reshape(T * B, *x.shape[2:]),
        kernel,
        (stride, stride),
        [(pad, pad), (pad, pad)],
        dimension_numbers=("NHWC", "HWIO", "NHWC"),
        precision=lax.Precision.HIGHEST,
    )
    return y.reshape(T, B, *y.shape[1:])


def _bn(x, p):
    flat = x.reshape(-1, x.shape[-1])
    mean, std = flat.mean(0), flat.std(0)
    return 0.6 * (x - mean) / (std + 1e-5) * p["scale"] + p["bias"]


def _reference_block(p, x, stride, shortcut):
    r = mj.mlf(_bn(_conv(x, p["conv1"]["kernel"], stride, 1), p["bn1"]))
    r = _bn(_conv(r, p["conv2"]["kernel"], 1, 1), p["bn2"])
    if "shortcut_conv" in p:
        s = _bn(_conv(x, p["shortcut_conv"]["kernel"], stride, 0), p["shortcut_bn"])
        if shortcut == "ds":
            s = mj.mlf(s)
    else:
        s = x
    return mj.mlf(r) + s if shortcut == "ds" else mj.mlf(r + s)


def _spike_counts(key, shape):
    return jax.random.randint(key, shape, 0, 4).astype(jnp.float32)


@pytest.mark.parametrize("shortcut", ["ds", "standard"])
@pytest.mark.parametrize("features, stride", [(4, 1), (8, 2), (8, 1)])
def test_block_matches_reference(shortcut, features, stride):
    x = _spike_counts(jax.random.key(0), (2, 3, 8, 8, 4))
    block = BasicBlock(features, strides=stride, shortcut=shortcut)
    v = block.init(jax.random.key(1), x)
    # random affine parameters so that every term matters
    leaves, tree = jax.tree.flatten(v["params"])
    keys = jax.random.split(jax.random.key(2), len(leaves))
    params = jax.tree.unflatten(
        tree,
        [
            leaf + 0.3 * jax.random.normal(k, leaf.shape)
            for leaf, k in zip(leaves, keys, strict=True)
        ],
    )
    out, _ = block.apply({**v, "params": params}, x, train=True, mutable=["batch_stats"])
    ref = _reference_block(jax.device_get(params), x, stride, shortcut)
    assert out.shape == (2, 3, 8 // stride, 8 // stride, features)
    np.testing.assert_allclose(out, ref, atol=1e-4)
    assert ("shortcut_conv" in params) == (stride != 1 or features != 4)


def test_theorem2_ds_block_is_identity_when_the_residual_fires_nothing():
    x = _spike_counts(jax.random.key(3), (4, 2, 6, 6, 8))
    outs = {}
    for shortcut in ("ds", "standard"):
        block = BasicBlock(8, shortcut=shortcut)
        v = block.init(jax.random.key(4), x)
        # silence the residual branch: bn2 outputs 0 everywhere -> its neuron never fires
        params = jax.tree.map(lambda p: p, v["params"])
        params["bn2"] = {"scale": jnp.zeros(8), "bias": jnp.zeros(8)}
        outs[shortcut] = block.apply({**v, "params": params}, x, True, mutable=["batch_stats"])[0]
    np.testing.assert_array_equal(outs["ds"], x)  # exactly the input
    # the standard block passes x through an MLF neuron, which is not the identity
    # (constant input 2 gives 2, 2, 3, ...; 3 gives 3, 2, 3, ...)
    assert not np.array_equal(outs["standard"], x)
    np.testing.assert_array_equal(outs["standard"], mj.mlf(x))


def test_unknown_shortcut_is_rejected():
    with pytest.raises(ValueError, match=r"unknown shortcut 'dense'.*'ds', 'standard'"):
        BasicBlock(4, shortcut="dense").init(jax.random.key(0), jnp.ones((1, 1, 4, 4, 4)))
