"""The Linen MLF layer and its recording of membrane potentials."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import mlf_jax as mj


def test_module_equals_the_pure_function_and_has_no_params():
    x = jax.random.uniform(jax.random.key(0), (4, 2, 3, 3, 5), maxval=3.0)
    layer = mj.nn.MLF(thresholds=(0.5, 1.5), tau=0.5, surrogate=mj.triangle(1.0))
    v = layer.init(jax.random.key(1), x)
    assert not jax.tree.leaves(v)
    np.testing.assert_array_equal(
        layer.apply(v, x), mj.mlf(x, thresholds=(0.5, 1.5), tau=0.5, surrogate=mj.triangle(1.0))
    )


def test_recording_is_off_by_default_and_sows_when_mutable():
    x = jnp.full((3, 2, 4), 1.5)
    layer = mj.nn.MLF()
    out, state = layer.apply({}, x, mutable=[mj.nn.RECORD_COLLECTION])
    rec = state[mj.nn.RECORD_COLLECTION]
    (u,) = rec["membrane"]
    (spikes,) = rec["spikes"]
    assert u.shape == (3, 3, 2, 4)  # [T, K, B, N]
    np.testing.assert_allclose(u[1, :, 0, 0], [1.5, 1.875, 1.875])
    np.testing.assert_array_equal(spikes, out)
    # not mutable: plain output, nothing recorded
    np.testing.assert_array_equal(layer.apply({}, x), out)


def test_module_rejects_input_without_time_axis():
    with pytest.raises(ValueError, match=r"\[T, B, \.\.\.\]"):
        mj.nn.MLF().apply({}, jnp.ones(3))
