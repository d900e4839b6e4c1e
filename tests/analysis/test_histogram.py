"""Potential histograms and the total surrogate derivative curve, on hand-built inputs."""

import jax.numpy as jnp
import numpy as np
import pytest

import mlf_jax as mj
from mlf_jax.analysis import potential_histogram, surrogate_curve

TH = (0.6, 1.6, 2.6)


def test_histogram_counts_by_hand():
    values = jnp.array([[0.0, 0.2, 0.4], [0.6, 0.8, 1.0]])
    counts, edges = potential_histogram(values, bins=2, value_range=(0.0, 1.0))
    np.testing.assert_array_equal(counts, [3, 3])
    np.testing.assert_allclose(edges, [0.0, 0.5, 1.0])
    assert isinstance(counts, np.ndarray) and isinstance(edges, np.ndarray)


def test_histogram_drops_non_finite_and_out_of_range_values():
    values = np.array([np.nan, np.inf, -5.0, 0.1, 0.3, 0.35, 0.9, 7.0])
    counts, _ = potential_histogram(values, bins=4, value_range=(0.0, 1.0))
    np.testing.assert_array_equal(counts, [1, 2, 0, 1])
    # density: 4 values in range, bin width 0.25 -> counts / (4 * 0.25)
    dens, _ = potential_histogram(values, bins=4, value_range=(0.0, 1.0), density=True)
    np.testing.assert_allclose(dens, [1.0, 2.0, 0.0, 1.0])


def test_histogram_default_range_and_explicit_edges():
    counts, edges = potential_histogram(np.array([1.0, 2.0, 2.0, 3.0]), bins=2)
    np.testing.assert_allclose(edges, [1.0, 2.0, 3.0])
    np.testing.assert_array_equal(counts, [1, 3])  # the last bin is closed
    counts, _ = potential_histogram(np.array([0.05, 0.5, 1.5, 2.5, 3.5]), bins=[0.1, 1.1, 3.1])
    np.testing.assert_array_equal(counts, [1, 2])


def test_histogram_rejects_bad_arguments():
    with pytest.raises(ValueError, match="value_range"):
        potential_histogram(np.zeros(3), value_range=(1.0, 0.0))
    with pytest.raises(ValueError, match="bins"):
        potential_histogram(np.zeros(3), bins=0)


def test_rectangular_curve_is_one_on_the_tiled_windows():
    grid = np.array([0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 3.5, -2.0])
    np.testing.assert_array_equal(
        surrogate_curve(grid, TH, mj.rectangular(1.0)), [0, 1, 1, 1, 1, 1, 0, 0]
    )
    # width 0.5 with spacing 1: gaps between the windows, height 2
    np.testing.assert_array_equal(
        surrogate_curve(np.array([0.6, 1.0, 1.7, 2.2]), TH, mj.rectangular(0.5)), [2, 0, 2, 0]
    )
    # a single level (LIF): one window
    np.testing.assert_array_equal(
        surrogate_curve(np.array([0.5, 1.5]), (0.6,), mj.rectangular(1.0)), [1, 0]
    )


def test_rectangular_curve_is_zero_where_two_open_windows_meet():
    """Each window is open (|u - th| < a/2, as the authors' code and training compute it),
    so the curve is 0 where they meet at exactly a/2 from both thresholds: 1.1 in float32
    (1.1 - 0.6 and 1.1 - 1.6 round to +-0.5; 2.1 - 1.6 rounds below 0.5), as documented."""
    grid = np.array([1.05, 1.1, 1.15, 2.1])
    np.testing.assert_array_equal(surrogate_curve(grid, TH, mj.rectangular(1.0)), [1, 0, 1, 1])
    assert "at 1.1; rounding puts 2.1 inside" in " ".join(surrogate_curve.__doc__.split())


def test_triangle_curve_sums_overlapping_levels():
    # half-width 1 spaced by 1: neighbours overlap and sum to 1 between th_1 and th_K
    grid = np.array([0.6, 1.1, 2.0, 3.1, -0.4, 0.1])
    np.testing.assert_allclose(
        surrogate_curve(grid, TH, mj.triangle(1.0)), [1.0, 1.0, 1.0, 0.5, 0.0, 0.5], atol=1e-6
    )
    assert surrogate_curve(jnp.zeros((2, 3)), TH, "sigmoid").shape == (2, 3)
