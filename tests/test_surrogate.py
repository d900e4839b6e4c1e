"""Surrogate derivatives against hand-written closed forms and finite differences."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import mlf_jax as mj

# Closed forms written out independently of the library (numpy, float64).
CLOSED_FORMS = {
    "rectangular": lambda z, w: np.where(np.abs(z) < w / 2, 1.0 / w, 0.0),
    "triangle": lambda z, w: np.maximum(0.0, 1.0 - np.abs(z) / w) / w,
    "sigmoid": lambda z, a: a * np.exp(-a * z) / (1.0 + np.exp(-a * z)) ** 2,
    "arctan": lambda z, a: a / 2 / (1.0 + (math.pi * a * z / 2) ** 2),
}
PARAMS = {"rectangular": 0.8, "triangle": 1.3, "sigmoid": 3.0, "arctan": 2.5}
# Points where the relaxation is not differentiable (finite differences avoid them).
KINKS = {
    "rectangular": lambda w: [-w / 2, w / 2],
    "triangle": lambda w: [-w, 0.0, w],
    "sigmoid": lambda a: [],
    "arctan": lambda a: [],
}


def _points(name, p, n=400, seed=0):
    z = np.random.default_rng(seed).uniform(-3, 3, n)
    for k in KINKS[name](p):
        z = z[np.abs(z - k) > 1e-2]
    return z


@pytest.mark.parametrize("name", sorted(CLOSED_FORMS))
def test_spike_gradient_equals_closed_form(name):
    p = PARAMS[name]
    s = mj.get_surrogate(name, p)
    z = _points(name, p)
    g = jax.grad(lambda z: mj.spike(z, s).sum())(jnp.asarray(z, jnp.float32))
    np.testing.assert_allclose(np.asarray(g), CLOSED_FORMS[name](z, p), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", sorted(CLOSED_FORMS))
def test_spike_gradient_equals_finite_differences_of_relaxation(name):
    p = PARAMS[name]
    s = mj.get_surrogate(name, p)
    z = _points(name, p)
    with jax.enable_x64(True):
        z64 = jnp.asarray(z, jnp.float64)
        h = 1e-5
        fd = (s.relaxation(z64 + h) - s.relaxation(z64 - h)) / (2 * h)
        g = jax.grad(lambda z: mj.spike(z, s).sum())(z64)
    np.testing.assert_allclose(np.asarray(g), np.asarray(fd), rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("name", sorted(CLOSED_FORMS))
def test_relaxation_goes_from_zero_to_one(name):
    s = mj.get_surrogate(name, PARAMS[name])
    lo, hi = s.relaxation(jnp.asarray([-1e4, 1e4]))
    assert abs(float(lo)) < 1e-3 and abs(float(hi) - 1) < 1e-3


def test_spike_forward_is_strict_heaviside():
    z = jnp.asarray([-1.0, -1e-7, 0.0, 1e-7, 2.0])
    np.testing.assert_array_equal(mj.spike(z, mj.rectangular(1.0)), [0, 0, 0, 1, 1])


def test_nan_is_not_silently_a_missing_spike():
    out = mj.spike(jnp.asarray([jnp.nan, 1.0, -1.0]))
    assert np.isnan(out[0]) and out[1] == 1 and out[2] == 0


def test_rectangular_window_is_open_interval():
    # g = 1/w strictly inside |z| < w/2 and 0 on the edges and outside.
    g = jax.grad(lambda z: mj.spike(z, mj.rectangular(2.0)).sum())(
        jnp.asarray([-1.0, -0.999, 0.0, 0.999, 1.0, 1.5])
    )
    np.testing.assert_array_equal(g, [0.0, 0.5, 0.5, 0.5, 0.0, 0.0])


def test_spike_under_jit_vmap_and_second_transform():
    s = mj.sigmoid(2.0)
    z = jnp.linspace(-2, 2, 12).reshape(3, 4)
    f = jax.jit(jax.vmap(jax.grad(lambda r: (mj.spike(r, s) * jnp.arange(4.0)).sum())))
    expected = CLOSED_FORMS["sigmoid"](np.asarray(z, np.float64), 2.0) * np.arange(4.0)
    np.testing.assert_allclose(f(z), expected, rtol=1e-5)


def test_unknown_surrogate_name_is_a_value_error_listing_the_known_ones():
    with pytest.raises(ValueError, match=r"unknown surrogate 'gauss'.*rectangular"):
        mj.spike(jnp.zeros(3), "gauss")


def test_non_surrogate_object_is_a_type_error():
    with pytest.raises(TypeError, match="surrogate must be"):
        mj.spike(jnp.zeros(3), lambda z: z)


@pytest.mark.parametrize("bad", [0.0, -1.0, float("nan"), float("inf")])
def test_non_positive_width_is_rejected(bad):
    with pytest.raises(ValueError, match="finite positive"):
        mj.rectangular(bad)


def test_integer_input_is_rejected():
    with pytest.raises(TypeError, match="floating"):
        mj.spike(jnp.arange(3), mj.rectangular())
