"""Pallas MLF kernels (interpret mode on CPU) against mlf_jax.neurons.mlf and its autodiff."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mlf_jax.kernels.pallas_mlf import mlf_pallas
from mlf_jax.neurons import mlf
from mlf_jax.surrogate import arctan, rectangular, sigmoid, triangle

THRESHOLDS = {1: (0.6,), 3: (0.6, 1.6, 2.6)}


def _inputs(shape, seed):
    rng = np.random.default_rng(seed)
    # Mean 1.2, std 1.5: every level fires sometimes and many potentials sit in the windows.
    x = jnp.asarray(rng.normal(1.2, 1.5, shape), jnp.float32)
    g = jnp.asarray(rng.normal(size=shape), jnp.float32)
    return x, g


def _out_and_dx(fn, x, g):
    """Spikes and dL/dx for L = sum(spikes * g), under jit."""

    @jax.jit
    def run(x, g):
        out, vjp = jax.vjp(fn, x)
        return out, vjp(g)[0]

    return run(x, g)


def _check(pallas_fn, ref_fn, x, g):
    out, dx = _out_and_dx(pallas_fn, x, g)
    ref_out, ref_dx = _out_and_dx(ref_fn, x, g)
    assert out.shape == x.shape and out.dtype == x.dtype
    np.testing.assert_array_equal(np.asarray(out), np.asarray(ref_out))
    np.testing.assert_allclose(np.asarray(dx), np.asarray(ref_dx), rtol=1e-6, atol=1e-6)
    return out, ref_dx


@pytest.mark.parametrize("detach_reset", [False, True])
@pytest.mark.parametrize("time_steps", [1, 4, 10])
@pytest.mark.parametrize("levels", [1, 3])
def test_matches_mlf_and_autodiff(levels, time_steps, detach_reset):
    th = THRESHOLDS[levels]
    # N = 37 with block 16: three programs, the last one padded.
    x, g = _inputs((time_steps, 37), seed=100 * levels + 10 * time_steps + detach_reset)
    kw = dict(thresholds=th, tau=0.25, detach_reset=detach_reset)
    out, ref_dx = _check(
        lambda x: mlf_pallas(x, width=1.0, block=16, interpret=True, **kw),
        lambda x: mlf(x, surrogate=rectangular(1.0), **kw),
        x,
        g,
    )
    # The inputs exercise the kernel: spikes of every level and non-zero gradients.
    assert float(out.max()) == levels
    assert float(jnp.abs(ref_dx).max()) > 0


def test_trailing_shape_default_block_and_interpret():
    # [T, 3, 5, 7] -> N = 105; default block (1024) shrinks to 128; interpret=None -> CPU.
    x, g = _inputs((4, 3, 5, 7), seed=1)
    _check(mlf_pallas, mlf, x, g)


@pytest.mark.parametrize(
    "surrogate", [triangle(1.0), sigmoid(4.0), arctan(2.0)], ids=lambda s: type(s).__name__
)
def test_other_surrogates(surrogate):
    x, g = _inputs((4, 37), seed=2)
    _check(
        lambda x: mlf_pallas(x, surrogate=surrogate, block=16, interpret=True),
        lambda x: mlf(x, surrogate=surrogate),
        x,
        g,
    )


def test_width_and_tau():
    th, kw = (0.5, 1.0), dict(tau=0.5, detach_reset=False)
    x, g = _inputs((4, 37), seed=3)
    _check(
        lambda x: mlf_pallas(x, thresholds=th, width=0.5, block=16, interpret=True, **kw),
        lambda x: mlf(x, thresholds=th, surrogate=rectangular(0.5), **kw),
        x,
        g,
    )


def test_hand_examples():
    # by hand: constant input 1.5 -> 1,2,1,2,...; 2.0 -> 2,2,3,...; 0.5 -> 0,1,0,1,...
    x = jnp.broadcast_to(jnp.array([1.5, 2.0, 0.5], jnp.float32), (6, 3))
    out = np.asarray(mlf_pallas(x, interpret=True))
    np.testing.assert_array_equal(out[:, 0], [1, 2, 1, 2, 1, 2])
    np.testing.assert_array_equal(out[:, 1], [2, 2, 3, 2, 2, 3])
    np.testing.assert_array_equal(out[:, 2], [0, 1, 0, 1, 0, 1])


def test_nan_propagates_like_mlf():
    x = jnp.array([[1.0, jnp.nan], [1.0, 0.0], [1.0, 0.0]], jnp.float32)
    np.testing.assert_array_equal(np.asarray(mlf_pallas(x, interpret=True)), np.asarray(mlf(x)))


def test_rejects_traced_or_invalid_parameters():
    x = jnp.ones((3, 4), jnp.float32)
    with pytest.raises(TypeError, match="static"):
        jax.jit(lambda th: mlf_pallas(x, thresholds=th, interpret=True))(jnp.array([0.6, 1.6]))
    with pytest.raises(TypeError, match="static"):
        jax.jit(lambda tau: mlf_pallas(x, tau=tau, interpret=True))(0.25)
    with pytest.raises(TypeError, match="static"):
        jax.jit(lambda a: mlf_pallas(x, thresholds=(a, 1.6), interpret=True))(0.6)
    with pytest.raises(ValueError, match="increasing"):
        mlf_pallas(x, thresholds=(1.6, 0.6), interpret=True)
    with pytest.raises(ValueError, match="tau"):
        mlf_pallas(x, tau=1.5, interpret=True)
    with pytest.raises(ValueError, match="block"):
        mlf_pallas(x, block=0, interpret=True)
    with pytest.raises(TypeError, match="floating"):
        mlf_pallas(jnp.ones((3, 4), jnp.int32), interpret=True)
