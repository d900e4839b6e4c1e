"""Parameterisations of the leak and the thresholds: bounds, inverses, bad values."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mlf_jax import reparam


def test_leak_logit_round_trip_and_bounds():
    with jax.enable_x64(True):
        for tau in (1e-6, 0.25, 0.5, 0.9, 1 - 1e-6):
            w = reparam.logit_of_leak(tau)
            np.testing.assert_allclose(reparam.leak_from_logit(jnp.float64(w)), tau, rtol=1e-12)
        # the closed form: logit(0.25) = log(1/3)
        np.testing.assert_allclose(reparam.logit_of_leak(0.25), np.log(1 / 3), rtol=1e-15)
        w = jnp.linspace(-30.0, 30.0, 601)
        tau = np.asarray(reparam.leak_from_logit(w))
        assert np.all((tau > 0) & (tau < 1)) and np.all(np.diff(tau) > 0)


def test_threshold_raw_round_trip_by_hand():
    with jax.enable_x64(True):
        raw = reparam.raw_of_thresholds((0.6, 1.6, 2.6))
        # gaps 0.6, 1, 1; softplus^-1(y) = log(exp(y) - 1)
        np.testing.assert_allclose(raw, np.log(np.expm1([0.6, 1.0, 1.0])), rtol=1e-14)
        np.testing.assert_allclose(
            reparam.thresholds_from_raw(jnp.asarray(raw)), [0.6, 1.6, 2.6], rtol=1e-14
        )


def test_any_raw_values_give_positive_increasing_thresholds():
    raw = jax.random.uniform(jax.random.key(0), (200, 4), minval=-10.0, maxval=10.0)
    th = np.asarray(jax.vmap(reparam.thresholds_from_raw)(raw))
    assert np.all(th[:, 0] > 0) and np.all(np.diff(th, axis=1) > 0)


@pytest.mark.parametrize("tau", [0.0, 1.0, -0.2, (0.2, 0.3)])
def test_a_leak_without_a_finite_logit_is_refused(tau):
    with pytest.raises(ValueError, match="strictly between 0 and 1"):
        reparam.logit_of_leak(tau)


@pytest.mark.parametrize(
    "thresholds, message",
    [
        ((0.0, 1.0), "positive and strictly increasing"),
        ((-0.5, 1.0), "positive and strictly increasing"),
        ((0.6, 0.6), "positive and strictly increasing"),
        ((), "non-empty 1-D"),
        ((0.6, float("inf")), "finite"),
    ],
)
def test_thresholds_that_cannot_be_parameterised_are_refused(thresholds, message):
    with pytest.raises(ValueError, match=message):
        reparam.raw_of_thresholds(thresholds)
