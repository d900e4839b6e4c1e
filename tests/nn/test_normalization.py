"""TdBatchNorm against an independent numpy reference."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mlf_jax.nn import TdBatchNorm


def _reference(x, scale, bias, alpha=1.0, v_th=0.6, eps=1e-5):
    """Per channel over every other axis; eps on the std; biased batch variance."""
    c = x.shape[-1]
    flat = np.asarray(x, np.float64).reshape(-1, c)
    mean = flat.mean(0)
    var = ((flat - mean) ** 2).mean(0)
    y = alpha * v_th * (x - mean) / (np.sqrt(var) + eps)
    n = flat.shape[0]
    return y * scale + bias, mean, var * n / (n - 1)


@pytest.fixture(scope="module")
def x():
    # [T, B, H, W, C] with per-channel offsets and scales
    base = jax.random.normal(jax.random.key(0), (3, 4, 5, 5, 6))
    return base * jnp.arange(1.0, 7.0) + jnp.arange(6.0)


def test_training_output_and_running_statistics(x):
    bn = TdBatchNorm(alpha=1.5, v_th=0.6, momentum=0.9, epsilon=1e-3)
    v = bn.init(jax.random.key(1), x)
    scale = np.linspace(0.5, 2.0, 6)
    bias = np.linspace(-1.0, 1.0, 6)
    v = {
        "params": {"scale": jnp.asarray(scale), "bias": jnp.asarray(bias)},
        **{"batch_stats": v["batch_stats"]},
    }
    y, upd = bn.apply(v, x, mutable=["batch_stats"])
    ref, mean, unbiased = _reference(np.asarray(x), scale, bias, alpha=1.5, eps=1e-3)
    np.testing.assert_allclose(y, ref, rtol=1e-4, atol=1e-5)
    # running = 0.9 * init + 0.1 * batch (PyTorch momentum 0.1); init mean 0, var 1
    np.testing.assert_allclose(upd["batch_stats"]["mean"], 0.1 * mean, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(upd["batch_stats"]["var"], 0.9 + 0.1 * unbiased, rtol=1e-5)


def test_statistics_cover_time_batch_and_space(x):
    # Folding [T, B] into one axis must not change anything.
    bn = TdBatchNorm()
    v = bn.init(jax.random.key(1), x)
    y5, _ = bn.apply(v, x, mutable=["batch_stats"])
    y4, _ = bn.apply(v, x.reshape(12, 5, 5, 6), mutable=["batch_stats"])
    np.testing.assert_allclose(y5.reshape(12, 5, 5, 6), y4, rtol=1e-6)
    # each channel has mean 0 and std v_th (up to eps) over T, B, H, W
    flat = np.asarray(y5).reshape(-1, 6)
    np.testing.assert_allclose(flat.mean(0), 0.0, atol=1e-5)
    np.testing.assert_allclose(flat.std(0), 0.6, rtol=1e-4)


def test_evaluation_uses_running_statistics(x):
    bn = TdBatchNorm(use_running_average=True, epsilon=1e-5)
    v = bn.init(jax.random.key(1), x)
    mean = jnp.arange(6.0)
    var = jnp.arange(1.0, 7.0) ** 2
    v = {"params": v["params"], "batch_stats": {"mean": mean, "var": var}}
    y = bn.apply(v, x)
    expected = 0.6 * (np.asarray(x) - np.asarray(mean)) / (np.sqrt(np.asarray(var)) + 1e-5)
    np.testing.assert_allclose(y, expected, rtol=1e-5, atol=1e-5)


def test_init_does_not_move_running_statistics(x):
    v = TdBatchNorm().init(jax.random.key(1), x)
    np.testing.assert_array_equal(v["batch_stats"]["mean"], np.zeros(6))
    np.testing.assert_array_equal(v["batch_stats"]["var"], np.ones(6))
    assert set(v["params"]) == {"scale", "bias"}


def test_without_affine_has_no_parameters(x):
    v = TdBatchNorm(use_scale=False, use_bias=False).init(jax.random.key(1), x)
    assert "params" not in v or not v["params"]


def test_cross_device_statistics_equal_the_global_batch(x):
    # Two "devices" (a named vmap axis) each with half the batch.
    bn = TdBatchNorm(axis_name="data")
    v = bn.init(jax.random.key(1), x)
    shards = jnp.stack([x[:, :2], x[:, 2:]])  # [2, T, B/2, H, W, C]
    y, upd = jax.vmap(lambda s: bn.apply(v, s, mutable=["batch_stats"]), axis_name="data")(shards)
    y_global, upd_global = TdBatchNorm().apply(v, x, mutable=["batch_stats"])
    np.testing.assert_allclose(
        jnp.concatenate([y[0], y[1]], axis=1), y_global, rtol=1e-5, atol=1e-5
    )
    for k in ("mean", "var"):
        np.testing.assert_allclose(
            upd["batch_stats"][k][0], upd_global["batch_stats"][k], rtol=1e-5
        )


def test_rank_one_input_is_rejected():
    with pytest.raises(ValueError, match="rank >= 2"):
        TdBatchNorm().init(jax.random.key(0), jnp.ones(4))
