"""Surrogate windows, per-level derivatives and dormant units on hand-chosen potentials."""

import jax.numpy as jnp
import numpy as np
import pytest

import mlf_jax as mj
from mlf_jax.analysis import (
    LayerRecord,
    dormant_fraction,
    dormant_fractions,
    dormant_mask,
    surrogate_derivative,
    surrogate_windows,
)

TH = (0.6, 1.6, 2.6)


def _membrane(*units):
    """[T=1, K, B] potentials from per-unit tuples (u_1, ..., u_K)."""
    return jnp.asarray(np.array(units, np.float32).T[None])


def test_windows_closed_forms():
    close = np.testing.assert_allclose
    close(surrogate_windows(TH, mj.rectangular(1.0)), [(0.1, 1.1), (1.1, 2.1), (2.1, 3.1)])
    close(surrogate_windows(TH, mj.rectangular(0.5)), [(0.35, 0.85), (1.35, 1.85), (2.35, 2.85)])
    # triangle of half-width w: th +- w
    close(surrogate_windows((0.5, 1.5), mj.triangle(1.0)), [(-0.5, 1.5), (0.5, 2.5)])
    windows = surrogate_windows((0.6,), "sigmoid")
    assert windows == [(-np.inf, np.inf)]
    assert all(isinstance(v, float) for v in windows[0])


def test_windows_reject_bad_thresholds():
    with pytest.raises(ValueError, match="non-empty 1-D"):
        surrogate_windows((), mj.rectangular(1.0))
    with pytest.raises(ValueError, match="finite"):
        surrogate_windows((0.6, np.nan), mj.rectangular(1.0))


def test_rectangular_derivative_and_dormant_units_by_hand():
    u = _membrane(
        (0.05, 0.05, 0.05),  # below every window: dormant
        (0.5, 0.5, 0.5),  # level 1: z = -0.1, inside: not dormant
        (3.5, 1.5, 5.0),  # level 1 outside, level 2 inside (z = -0.1): not dormant
        (-1.0, 5.0, 3.2),  # z = -1.6, 3.4, 0.6: all outside: dormant
    )
    g = surrogate_derivative(u, TH, mj.rectangular(1.0))
    assert g.shape == (1, 3, 4)
    np.testing.assert_array_equal(
        g[0], [[0.0, 1.0, 0.0, 0.0], [0.0, 0.0, 1.0, 0.0], [0.0, 0.0, 0.0, 0.0]]
    )
    # width 2 -> height 1/2 on |z| < 1
    np.testing.assert_array_equal(surrogate_derivative(u, TH, mj.rectangular(2.0))[0, 0, 1], 0.5)
    mask = dormant_mask(u, TH, mj.rectangular(1.0))
    assert mask.dtype == jnp.bool_ and mask.shape == (1, 4)
    np.testing.assert_array_equal(mask, [[True, False, False, True]])
    assert dormant_fraction(u, TH, mj.rectangular(1.0)) == 0.5


def test_triangle_has_wider_windows():
    u = _membrane(
        (0.05, 0.05, 0.05),  # z_1 = -0.55: g = 0.45, not dormant
        (-1.0, 5.0, 3.2),  # z_3 = 0.6: g = 0.4, not dormant
        (-0.5, -0.5, -0.5),  # z_1 = -1.1: all outside: dormant
    )
    g = surrogate_derivative(u, TH, mj.triangle(1.0))
    np.testing.assert_allclose(g[0, 0, 0], 0.45, atol=1e-6)
    np.testing.assert_allclose(g[0, 2, 1], 0.4, atol=1e-6)
    np.testing.assert_array_equal(dormant_mask(u, TH, mj.triangle(1.0)), [[False, False, True]])
    assert dormant_fraction(u, TH, mj.triangle(1.0)) == pytest.approx(1 / 3)


def test_sigmoid_has_no_dormant_units_and_atol_counts_small_derivatives():
    u = _membrane((0.6, 1.6, 2.6), (-1.0, -1.0, -1.0), (4.0, 4.0, 4.0))
    g = surrogate_derivative(u, TH, mj.sigmoid(4.0))
    np.testing.assert_allclose(g[0, :, 0], [1.0, 1.0, 1.0])  # alpha/4 at the threshold
    assert not bool(dormant_mask(u, TH, mj.sigmoid(4.0)).any())
    # at u = -1, the largest derivative is g(-1.6) = 4 s (1 - s), s = sigmoid(-6.4)
    s = 1 / (1 + np.exp(6.4))
    expected = 4 * s * (1 - s)
    assert float(g[0, 0, 1]) == pytest.approx(expected, rel=1e-5)
    mask = dormant_mask(u, TH, mj.sigmoid(4.0), atol=2 * expected)
    np.testing.assert_array_equal(mask, [[False, True, False]])


def test_dormant_fractions_per_layer_in_record_order():
    rect = mj.rectangular(1.0)
    spikes = jnp.zeros((1, 2))
    recs = {
        "b": LayerRecord(_membrane((0.05,) * 3, (0.5,) * 3), spikes),  # 1 of 2
        "a": LayerRecord(_membrane((0.5,) * 3, (1.5,) * 3), spikes),  # 0 of 2
    }
    fr = dormant_fractions(recs, TH, rect)
    assert list(fr) == ["b", "a"]
    assert fr == {"b": 0.5, "a": 0.0}


def test_time_steps_and_extra_axes():
    # [T=2, K=1, B=1, 2]: LIF; windows (0.1, 1.1)
    u = jnp.array([[[[0.0, 0.5]]], [[[1.2, 1.0]]]])
    np.testing.assert_array_equal(dormant_mask(u, (0.6,), "rectangular"), [[[1, 0]], [[1, 0]]])


def test_bad_membrane_is_rejected():
    with pytest.raises(ValueError, match=r"K=2 levels.*3 thresholds"):
        dormant_mask(jnp.zeros((1, 2, 4)), TH, mj.rectangular(1.0))
    with pytest.raises(ValueError, match=r"\[T, K, \.\.\.\]"):
        surrogate_derivative(jnp.zeros(3), TH, mj.rectangular(1.0))
    with pytest.raises(ValueError, match="atol"):
        dormant_mask(jnp.zeros((1, 3, 1)), TH, mj.rectangular(1.0), atol=-1.0)
