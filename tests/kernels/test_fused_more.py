"""More checks of the fused MLF (``mlf_jax.kernels.fused``), beyond ``test_fused.py``:

- every surrogate family in both reset modes and under both unroll policies, on a
  [T, 3, 4, 5] input;
- the threshold and tau gradients against the hand-derived recurrence evaluated in
  float64 numpy (independent of JAX autodiff);
- inside ``jax.shard_map``.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

import mlf_jax as mj
from mlf_jax.kernels.fused import mlf_fused


def plain(x, **kw):
    """Autodiff through the scan; an explicit ``unroll`` keeps ``mj.mlf`` off the fused path."""
    return mj.mlf(x, unroll=kw.pop("unroll", 1), **kw)


def _grads(fn, x, w, th, tau, **kw):
    def loss(x, th, tau):
        return (fn(x, thresholds=th, tau=tau, **kw) * w).sum()

    return jax.jit(jax.grad(loss, argnums=(0, 1, 2)))(x, th, tau)


@pytest.mark.parametrize("T", [3, 12])  # fully unrolled / rolled scan (auto_unroll)
@pytest.mark.parametrize("detach", [False, True])
@pytest.mark.parametrize("name", ["rectangular", "triangle", "sigmoid", "arctan"])
def test_surrogates_reset_modes_and_unroll_policies(T, detach, name):
    key = jax.random.key(T)
    x = jax.random.uniform(key, (T, 3, 4, 5), minval=-0.5, maxval=3.5)
    w = jax.random.normal(jax.random.fold_in(key, 1), x.shape)
    th, tau = jnp.asarray((0.6, 1.6)), jnp.float32(0.3)
    kw = dict(surrogate=mj.get_surrogate(name), detach_reset=detach)
    np.testing.assert_array_equal(
        mlf_fused(x, thresholds=th, tau=tau, **kw), plain(x, thresholds=th, tau=tau, **kw)
    )
    got, want = _grads(mlf_fused, x, w, th, tau, **kw), _grads(plain, x, w, th, tau, **kw)
    # dx elementwise to 1e-6; dth, dtau are float32 sums of T * 60 terms whose order
    # differs between the two implementations (measured up to ~8e-6 apart): 2e-5.
    for g, r, atol in zip(got, want, (1e-6, 2e-5, 2e-5), strict=True):
        np.testing.assert_allclose(g, r, rtol=1e-6, atol=atol)


def _hand_bptt_float64(x, w, thresholds, tau, detach, width=1.0):
    """The recurrence of the fused module's docstring, in float64 (rectangular surrogate)."""
    dx, dth, dtau = np.zeros_like(x), np.zeros(len(thresholds)), 0.0
    for k, th in enumerate(thresholds):
        u, o = np.zeros_like(x), np.zeros_like(x)
        for t in range(len(x)):
            prev_u = u[t - 1] if t else 0.0
            prev_o = o[t - 1] if t else 0.0
            u[t] = tau * prev_u * (1 - prev_o) + x[t]
            o[t] = u[t] > th
        s = np.where(np.abs(u - th) < width / 2, 1 / width, 0.0)
        delta = np.zeros_like(x[0])  # delta[t + 1]
        for t in reversed(range(len(x))):
            do = w[t] - (0.0 if detach else tau * u[t] * delta)
            dth[k] -= (s[t] * do).sum()
            dtau += (delta * u[t] * (1 - o[t])).sum()
            delta = s[t] * do + tau * (1 - o[t]) * delta
            dx[t] += delta
    return dx, dth, dtau


@pytest.mark.parametrize("detach", [False, True])
def test_gradients_match_the_hand_recurrence_in_float64(detach):
    rng = np.random.default_rng(int(detach))
    x, w = rng.uniform(-0.5, 3.5, (7, 50)), rng.normal(size=(7, 50))
    th, tau = (0.6, 1.6, 2.6), 0.25
    got = _grads(
        mlf_fused,
        jnp.asarray(x, jnp.float32),
        jnp.asarray(w, jnp.float32),
        jnp.asarray(th, jnp.float32),
        jnp.float32(tau),
        detach_reset=detach,
    )
    want = _hand_bptt_float64(x, w, th, tau, detach)
    for g, r in zip(got, want, strict=True):
        np.testing.assert_allclose(g, r, rtol=1e-6, atol=1e-5)


def _sharded_grads(fn, check_vma):
    """Per-device gradients inside shard_map (data split over axis 1), psum'd over devices."""
    mesh = jax.make_mesh((2,), ("d",))
    key = jax.random.key(3)
    x = jax.random.uniform(key, (12, 8, 6), maxval=3.0)
    w = jax.random.normal(jax.random.fold_in(key, 1), x.shape)
    th, tau = jnp.asarray((0.6, 1.6, 2.6)), jnp.float32(0.25)

    def local(x, w, th, tau):
        def loss(x, th, tau):
            return (fn(x, thresholds=th, tau=tau) * w).sum()

        dx, dth, dtau = jax.grad(loss, argnums=(0, 1, 2))(x, th, tau)
        if not check_vma:  # with check_vma, autodiff already psums replicated params' grads
            dth, dtau = jax.lax.psum(dth, "d"), jax.lax.psum(dtau, "d")
        return dx, dth, dtau

    sharded = NamedSharding(mesh, P(None, "d"))
    mapped = jax.shard_map(
        local,
        mesh=mesh,
        in_specs=(P(None, "d"), P(None, "d"), P(), P()),
        out_specs=(P(None, "d"), P(), P()),
        check_vma=check_vma,
    )
    got = jax.jit(mapped)(jax.device_put(x, sharded), jax.device_put(w, sharded), th, tau)
    return got, _grads(plain, x, w, th, tau)


def _needs_two_devices():
    if jax.device_count() < 2:
        pytest.skip("needs 2 devices (tests/conftest.py forces 2 CPU devices)")


def test_inside_shard_map_without_vma_checks():
    _needs_two_devices()
    got, want = _sharded_grads(mlf_fused, check_vma=False)
    for g, r, atol in zip(got, want, (1e-6, 1e-5, 1e-5), strict=True):
        np.testing.assert_allclose(g, r, rtol=1e-6, atol=atol)


def test_inside_shard_map_with_vma_checks():
    # shard_map's default: replicated thresholds/tau get cotangents summed over devices
    _needs_two_devices()
    got, want = _sharded_grads(mlf_fused, check_vma=True)
    for g, r, atol in zip(got, want, (1e-6, 1e-5, 1e-5), strict=True):
        np.testing.assert_allclose(g, r, rtol=1e-6, atol=atol)
