"""The fused MLF (``mlf_jax.kernels.fused``, hand-written BPTT):

- against autodiff through the plain scan, for 1-3 levels, several T, both reset modes;
- every surrogate family in both reset modes and under both unroll policies;
- the threshold and tau gradients against the hand-derived recurrence evaluated in
  float64 numpy (independent of JAX autodiff);
- under jit / vmap / checkpoint and inside ``jax.shard_map``;
- the static-threshold path and ``lif``'s dispatch to the kernel.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

import mlf_jax as mj
from mlf_jax.kernels import mlf_fused

THRESHOLDS = {1: (0.6,), 2: (0.6, 1.6), 3: (0.6, 1.6, 2.6)}


def plain(x, **kw):
    """The reference: autodiff through lax.scan (an explicit ``unroll`` keeps
    ``mj.mlf`` from dispatching long sequences to the fused kernel)."""
    return mj.mlf(x, unroll=kw.pop("unroll", 1), **kw)


def _grads(fn, x, w, th, tau, **kw):
    def loss(x, th, tau):
        return (fn(x, thresholds=th, tau=tau, **kw) * w).sum()

    return jax.grad(loss, argnums=(0, 1, 2))(x, th, tau)


def _jit_grads(fn, x, w, th, tau, **kw):
    def loss(x, th, tau):
        return (fn(x, thresholds=th, tau=tau, **kw) * w).sum()

    return jax.jit(jax.grad(loss, argnums=(0, 1, 2)))(x, th, tau)


def _assert_close(got, want):
    # dL/dx elementwise to 1e-6; dL/dth and dL/dtau are sums over every unit and
    # step (up to 768 float32 terms here), so the summation order alone moves
    # them by a few 1e-6: 1e-5 there.
    for g, r, name, atol in zip(
        got, want, ("x", "thresholds", "tau"), (1e-6, 1e-5, 1e-5), strict=True
    ):
        np.testing.assert_allclose(g, r, rtol=1e-6, atol=atol, err_msg=name)


@pytest.mark.parametrize("levels", [1, 2, 3])
# T = 1: no recurrence (delta[T] = 0 only); T = 5: fully unrolled scan; T = 12 > 10
# (MAX_UNROLLED_STEPS): rolled scan (auto_unroll). T = 2 and T = 40 took these same paths.
@pytest.mark.parametrize("T", [1, 5, 12])
@pytest.mark.parametrize("detach", [False, True])
def test_equal_to_autodiff_of_the_plain_scan(levels, T, detach):
    key = jax.random.key(100 * levels + T)
    x = jax.random.uniform(key, (T, 64), minval=-0.5, maxval=3.5)
    w = jax.random.normal(jax.random.fold_in(key, 1), x.shape)
    th, tau = jnp.asarray(THRESHOLDS[levels]), jnp.float32(0.25)
    np.testing.assert_array_equal(mlf_fused(x, thresholds=th), plain(x, thresholds=th))
    # under jit (one compilation per side; eager gradients: test_every_surrogate_family)
    _assert_close(
        _jit_grads(mlf_fused, x, w, th, tau, detach_reset=detach),
        _jit_grads(plain, x, w, th, tau, detach_reset=detach),
    )


@pytest.mark.parametrize("name", ["rectangular", "triangle", "sigmoid", "arctan"])
def test_every_surrogate_family(name):
    x = jax.random.uniform(jax.random.key(7), (6, 3, 4, 5), minval=-0.5, maxval=3.5)
    w = jax.random.normal(jax.random.key(8), x.shape)
    th, tau = jnp.asarray(THRESHOLDS[3]), jnp.float32(0.4)
    sur = mj.get_surrogate(name)
    _assert_close(
        _grads(mlf_fused, x, w, th, tau, surrogate=sur),
        _grads(plain, x, w, th, tau, surrogate=sur),
    )


def test_under_jit_vmap_and_checkpoint():
    x = jax.random.uniform(jax.random.key(9), (5, 4, 6), maxval=3.0)
    w = jax.random.normal(jax.random.key(10), x.shape)

    def loss(fn):
        return lambda x: (fn(x) * w).sum()

    ref = jax.grad(loss(plain))(x)
    np.testing.assert_allclose(jax.jit(jax.grad(loss(mlf_fused)))(x), ref, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(
        jax.grad(jax.checkpoint(loss(mlf_fused)))(x), ref, rtol=1e-6, atol=1e-6
    )
    per_column = jax.vmap(mlf_fused, in_axes=1, out_axes=1)(x)
    np.testing.assert_array_equal(per_column, plain(x))


def test_bad_input_is_rejected_like_mlf():
    with pytest.raises(ValueError, match="strictly increasing"):
        mlf_fused(jnp.ones((2, 3)), thresholds=(1.0, 0.5))
    with pytest.raises(TypeError, match="floating"):
        mlf_fused(jnp.ones((2, 3), jnp.int32))


@pytest.mark.parametrize(
    "levels, T, detach, name",
    [(1, 1, False, "rectangular"), (3, 5, True, "sigmoid"), (1, 40, True, "rectangular"),
     (3, 40, False, "rectangular"), (3, 40, False, "arctan")],
)  # fmt: skip
def test_static_thresholds_take_the_input_gradient_only_path(levels, T, detach, name):
    # Python-float thresholds and tau: the backward pass carries no parameter
    # gradients; dL/dx must still equal autodiff through the plain scan.
    key = jax.random.key(7 * levels + T)
    x = jax.random.uniform(key, (T, 3, 32), minval=-0.5, maxval=3.5)
    w = jax.random.normal(jax.random.fold_in(key, 1), x.shape)
    kw = dict(thresholds=THRESHOLDS[levels], tau=0.3, surrogate=name, detach_reset=detach)

    def grad(fn):
        return jax.grad(lambda x: (fn(x, **kw) * w).sum())(x)

    np.testing.assert_array_equal(mlf_fused(x, **kw), plain(x, **kw))
    np.testing.assert_allclose(grad(mlf_fused), grad(plain), rtol=1e-6, atol=1e-6)
    # the reverse scan carries the K deltas only (with parameter gradients: 2 K + 1)
    jaxpr = jax.make_jaxpr(jax.grad(lambda x: mlf_fused(x, **kw).sum()))(x).jaxpr
    (scan,) = [e for e in _equations(jaxpr) if e.primitive.name == "scan" and e.params["reverse"]]
    # its outputs: the final carries (one step's shape), then the stacked dL/dx ([T, ...])
    carries = [v for v in scan.outvars if v.aval.shape == x.shape[1:]]
    assert len(carries) == levels and len(scan.outvars) == levels + 1


def _equations(jaxpr):
    """Every equation of ``jaxpr`` and of the jaxprs nested in its equations' parameters."""
    for eqn in jaxpr.eqns:
        yield eqn
        for param in eqn.params.values():
            for sub in param if isinstance(param, (tuple, list)) else (param,):
                sub = getattr(sub, "jaxpr", sub)  # a ClosedJaxpr's Jaxpr
                if isinstance(sub, jax.extend.core.Jaxpr):
                    yield from _equations(sub)


def test_lif_auto_uses_the_fused_kernel_beyond_ten_steps_with_equal_results():
    x = jax.random.uniform(jax.random.key(3), (24, 2, 50), minval=-0.5, maxval=2.0)
    w = jax.random.normal(jax.random.key(4), x.shape)

    def grad(**kw):
        return jax.grad(lambda x: (mj.lif(x, threshold=0.7, tau=0.5, **kw) * w).sum())(x)

    np.testing.assert_array_equal(mj.lif(x, threshold=0.7), mj.lif(x, threshold=0.7, impl="scan"))
    np.testing.assert_allclose(grad(), grad(impl="scan"), rtol=1e-6, atol=1e-6)
    assert "name=_mlf_static" in str(jax.make_jaxpr(lambda x: mj.lif(x))(x))
    assert "name=_mlf_static" not in str(jax.make_jaxpr(lambda x: mj.lif(x))(x[:10]))  # scan


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
    got, want = _jit_grads(mlf_fused, x, w, th, tau, **kw), _jit_grads(plain, x, w, th, tau, **kw)
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
    got = _jit_grads(
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


def _sharded_jit_grads(fn, check_vma):
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
    return got, _jit_grads(plain, x, w, th, tau)


def _needs_two_devices():
    if jax.device_count() < 2:
        pytest.skip("needs 2 devices (tests/conftest.py forces 2 CPU devices)")


def test_inside_shard_map_without_vma_checks():
    _needs_two_devices()
    got, want = _sharded_jit_grads(mlf_fused, check_vma=False)
    for g, r, atol in zip(got, want, (1e-6, 1e-5, 1e-5), strict=True):
        np.testing.assert_allclose(g, r, rtol=1e-6, atol=atol)


def test_inside_shard_map_with_vma_checks():
    # shard_map's default: replicated thresholds/tau get cotangents summed over devices
    _needs_two_devices()
    got, want = _sharded_jit_grads(mlf_fused, check_vma=True)
    for g, r, atol in zip(got, want, (1e-6, 1e-5, 1e-5), strict=True):
        np.testing.assert_allclose(g, r, rtol=1e-6, atol=atol)
