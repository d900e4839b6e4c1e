"""Firing rates and silent units on hand-built spike counts."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mlf_jax.analysis import LayerRecord, firing_rate, firing_rates, silent_fraction

# [T=2, B=2, N=2] counts of a 3-level MLF
SPIKES = jnp.array([[[0, 3], [1, 0]], [[2, 0], [0, 0]]], jnp.float32)


def test_firing_rate_by_hand():
    assert firing_rate(SPIKES) == 0.75  # 6 spikes / 8 unit-steps
    assert firing_rate(SPIKES, levels=3) == 0.25  # of the maximum of 3 per unit-step
    assert firing_rate(np.ones((4, 1), np.int32)) == 1.0


def test_rates_are_arrays_usable_under_jit():
    assert float(jax.jit(firing_rate, static_argnums=1)(SPIKES, 3)) == 0.25
    assert float(jax.jit(silent_fraction)(SPIKES)) == 0.25
    assert isinstance(firing_rates({"a": LayerRecord(SPIKES, SPIKES)})["a"], float)  # for JSON


def test_silent_fraction_by_hand():
    # units (b, n): (0,0) fires at t=1, (0,1) at t=0, (1,0) at t=0, (1,1) never
    assert silent_fraction(SPIKES) == 0.25
    assert silent_fraction(jnp.zeros((3, 2, 5))) == 1.0


def test_firing_rates_per_layer_keep_order():
    membrane = jnp.zeros((2, 3, 2, 2))
    recs = {
        "z": LayerRecord(membrane, SPIKES),
        "a": LayerRecord(membrane, jnp.zeros_like(SPIKES)),
    }
    rates = firing_rates(recs)
    assert list(rates) == ["z", "a"]
    assert rates == {"z": 0.75, "a": 0.0}
    assert firing_rates(recs, levels=3)["z"] == 0.25


def test_bad_input_is_rejected():
    with pytest.raises(ValueError, match="levels"):
        firing_rate(SPIKES, levels=0)
    with pytest.raises(ValueError, match="empty"):
        firing_rate(jnp.zeros((0, 2)))
    with pytest.raises(ValueError, match=r"\[T, B, \.\.\.\]"):
        silent_fraction(jnp.zeros(3))
