"""Input encoders: direct vs broadcast, rate statistics, latency spike times by hand."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import mlf_jax as mj
from mlf_jax import encoders

# ---------------------------------------------------------------------------
# direct
# ---------------------------------------------------------------------------


def test_direct_is_the_input_at_every_step():
    x = jax.random.normal(jax.random.key(0), (2, 3, 4))
    out = encoders.direct(x, 5)
    assert out.shape == (5, 2, 3, 4) and out.dtype == x.dtype
    for t in range(5):
        np.testing.assert_array_equal(out[t], x)
    np.testing.assert_array_equal(out, np.broadcast_to(np.asarray(x)[None], (5, 2, 3, 4)))


# ---------------------------------------------------------------------------
# rate
# ---------------------------------------------------------------------------


def test_rate_mean_is_the_intensity_within_binomial_bounds():
    p = jnp.linspace(0.0, 1.0, 21)  # includes 0 and 1 (deterministic)
    T, draws = 400, 50  # 20,000 Bernoulli draws per intensity
    keys = jax.random.split(jax.random.key(1), draws)
    spikes = jax.jit(jax.vmap(lambda k: encoders.rate(k, p, T)))(keys)  # [draws, T, 21]
    assert spikes.shape == (draws, T, 21)
    assert set(np.unique(np.asarray(spikes)).tolist()) <= {0.0, 1.0}
    n = draws * T
    mean = np.asarray(spikes).mean(axis=(0, 1))
    # each mean is Binomial(n, p) / n: standard deviation sqrt(p (1 - p) / n); 5 sigma
    bound = 5 * np.sqrt(np.asarray(p) * (1 - np.asarray(p)) / n)
    assert np.all(np.abs(mean - np.asarray(p)) <= bound), (mean, np.asarray(p))
    np.testing.assert_array_equal(mean[[0, -1]], [0.0, 1.0])  # p = 0 never, p = 1 always


def test_rate_draws_are_independent_over_time():
    # the number of spikes over T steps of one element is Binomial(T, p): its variance
    # over elements is T p (1 - p) (correlated steps would inflate it)
    T, p = 16, 0.3
    x = jnp.full((20_000,), p)
    counts = np.asarray(encoders.rate(jax.random.key(2), x, T).sum(axis=0))
    var, expected = counts.var(), T * p * (1 - p)
    # sample variance of 20,000 values: relative standard error about sqrt(2 / n) = 1 %
    assert abs(var - expected) < 0.06 * expected, (var, expected)


def test_rate_clips_and_scales_and_repeats_for_a_key():
    x = jnp.asarray([-0.5, 0.0, 0.6, 1.0, 3.0])
    out = encoders.rate(jax.random.key(3), x, 50, gain=2.0)  # p = 0, 0, 1, 1, 1
    np.testing.assert_array_equal(out.sum(0), [0, 0, 50, 50, 50])
    np.testing.assert_array_equal(out, encoders.rate(jax.random.key(3), x, 50, gain=2.0))
    assert not np.array_equal(
        encoders.rate(jax.random.key(3), jnp.full(64, 0.5), 8),
        encoders.rate(jax.random.key(4), jnp.full(64, 0.5), 8),
    )


def test_rate_keeps_the_dtype_and_passes_nan_through():
    x = jnp.asarray([0.5, jnp.nan], jnp.bfloat16)
    out = encoders.rate(jax.random.key(5), x, 4)
    assert out.dtype == jnp.bfloat16 and out.shape == (4, 2)
    assert np.all(np.isnan(np.asarray(out[:, 1], np.float32)))


# ---------------------------------------------------------------------------
# latency
# ---------------------------------------------------------------------------


def _latency_reference(x, T, code="linear", eps=0.01):
    """Slow reference: spike step by the docstring's formula, element by element."""
    x = np.asarray(x, np.float64)
    out = np.zeros((T, *x.shape))
    for idx in np.ndindex(x.shape):
        c = min(max(x[idx], 0.0), 1.0)
        s = 1.0 - c if code == "linear" else math.log(max(c, eps)) / math.log(eps)
        out[(math.floor(s * (T - 1) + 0.5), *idx)] = 1.0
    return out


def test_latency_linear_spike_times_by_hand():
    x = jnp.asarray([1.0, 0.8, 0.55, 0.3, 0.0, 1.7, -0.4])
    # T = 5: (1 - c) * 4 = 0, 0.8, 1.8, 2.8, 4, 0, 4 -> nearest steps 0, 1, 2, 3, 4, 0, 4
    out = encoders.latency(x, 5)
    assert out.shape == (5, 7)
    np.testing.assert_array_equal(np.argmax(out, axis=0), [0, 1, 2, 3, 4, 0, 4])
    np.testing.assert_array_equal(out.sum(axis=0), np.ones(7))  # exactly one spike each


def test_latency_log_spike_times_by_hand():
    x = jnp.asarray([1.0, 0.3, 0.1, 0.05, 0.01, 0.001, 0.0])
    # eps = 0.01, T = 9: s = log(c) / log(0.01) = 0, 0.2614, 0.5, 0.6505, 1, 1, 1
    # s * 8 = 0, 2.09, 4, 5.20, 8, 8, 8 -> steps 0, 2, 4, 5, 8, 8, 8
    out = encoders.latency(x, 9, code="log", eps=0.01)
    np.testing.assert_array_equal(np.argmax(out, axis=0), [0, 2, 4, 5, 8, 8, 8])
    np.testing.assert_array_equal(out.sum(axis=0), np.ones(7))


@pytest.mark.parametrize("code", ["linear", "log"])
@pytest.mark.parametrize("T", [1, 2, 7])
def test_latency_matches_the_reference_loop(code, T):
    x = jax.random.uniform(jax.random.key(6), (3, 4, 5), minval=-0.2, maxval=1.2)
    out = jax.jit(lambda x: encoders.latency(x, T, code=code))(x)
    np.testing.assert_array_equal(out, _latency_reference(x, T, code))


def test_latency_is_vmappable_and_passes_nan_through():
    x = jnp.asarray([[0.2, jnp.nan], [0.9, 0.4]])
    per_row = jax.vmap(lambda r: encoders.latency(r, 4), out_axes=1)(x)
    whole = encoders.latency(x, 4)
    np.testing.assert_array_equal(per_row, whole)
    assert np.all(np.isnan(whole[:, 0, 1])) and not np.any(np.isnan(whole[:, 1]))


# ---------------------------------------------------------------------------
# bad arguments
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "call, error, message",
    [
        (lambda: encoders.direct(jnp.ones(3), 0), ValueError, "time_steps must be >= 1, got 0"),
        (lambda: encoders.direct(jnp.ones(3), 2.0), TypeError, "time_steps must be a Python"),
        (lambda: encoders.direct(jnp.ones(3), True), TypeError, "time_steps must be a Python"),
        (
            lambda: encoders.rate(jax.random.key(0), jnp.ones(3, jnp.uint8), 2),
            TypeError,
            "rate expects intensities as a floating array",
        ),
        (
            lambda: encoders.rate(jax.random.key(0), jnp.ones(3), 2, gain=0.0),
            ValueError,
            "gain must be a finite positive number, got 0.0",
        ),
        (
            lambda: encoders.latency(jnp.ones(3), 2, code="exp"),
            ValueError,
            "unknown code 'exp'",
        ),
        (lambda: encoders.latency(jnp.ones(3), 2, eps=1.0), ValueError, "eps must be below 1"),
        (lambda: encoders.latency(jnp.ones(3), -1), ValueError, "time_steps must be >= 1"),
    ],
)
def test_bad_arguments_are_named(call, error, message):
    with pytest.raises(error, match=message):
        call()


def test_the_package_exports_the_encoders():
    assert mj.encoders is encoders and "encoders" in mj.__all__
    assert set(encoders.ENCODERS) == {"direct", "rate", "latency"}
