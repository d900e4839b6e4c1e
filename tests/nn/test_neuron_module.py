"""The Linen MLF layer and its recording of membrane potentials."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import mlf_jax as mj


def test_module_equals_the_pure_function_and_has_no_params():
    x = jax.random.uniform(jax.random.key(0), (4, 2, 3, 3, 5), maxval=3.0)
    layer = mj.nn.MLF(thresholds=(0.5, 1.5), tau=0.5, surrogate=mj.triangle(1.0))
    v = layer.init(jax.random.key(1), x)
    assert not jax.tree.leaves(v)
    np.testing.assert_array_equal(
        layer.apply(v, x), mj.mlf(x, thresholds=(0.5, 1.5), tau=0.5, surrogate=mj.triangle(1.0))
    )


def test_recording_is_off_by_default_and_sows_when_mutable():
    x = jnp.full((3, 2, 4), 1.5)
    layer = mj.nn.MLF()
    out, state = layer.apply({}, x, mutable=[mj.nn.RECORD_COLLECTION])
    rec = state[mj.nn.RECORD_COLLECTION]
    (u,) = rec["membrane"]
    (spikes,) = rec["spikes"]
    assert u.shape == (3, 3, 2, 4)  # [T, K, B, N]
    np.testing.assert_allclose(u[1, :, 0, 0], [1.5, 1.875, 1.875])
    np.testing.assert_array_equal(spikes, out)
    # not mutable: plain output, nothing recorded
    np.testing.assert_array_equal(layer.apply({}, x), out)


def test_module_rejects_input_without_time_axis():
    with pytest.raises(ValueError, match=r"\[T, B, \.\.\.\]"):
        mj.nn.MLF().apply({}, jnp.ones(3))


# --- The MLF layer's learned leak and thresholds: off by default (bit-identical), their
# initial values, and their gradients against central finite differences (float64).
# The layer's forward pass is piecewise constant in tau and the thresholds (spikes are a
# step function), so finite differences of its spikes are zero almost everywhere and say
# nothing about a surrogate gradient. The checks here use quantities whose finite
# differences are meaningful: the parameter maps themselves (chain rule), the membrane
# potentials with a detached reset (smooth in tau while no spike flips), and a single time
# step, where the surrogate gradient is exactly the derivative of the relaxed output.


SIG = mj.sigmoid(3.0)  # smooth surrogate: gradients non-zero almost everywhere
H = 1e-6  # central-difference step (float64)


def _central(f, v, h=H):
    """Central differences of scalar ``f`` at float64 array ``v``, one coordinate at a time."""
    v = np.asarray(v, np.float64)
    grad = np.zeros_like(v)
    for idx in np.ndindex(v.shape):
        e = np.zeros_like(v)
        e[idx] = h
        grad[idx] = (float(f(v + e)) - float(f(v - e))) / (2 * h)
    return grad


# ---------------------------------------------------------------------------
# Off by default: no parameters, the pure function's numbers.
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("T", [3, 12])  # the scan (T <= 10) and the fused kernel
def test_default_layer_has_no_params_and_is_bit_identical_to_the_pure_function(T):
    x = jax.random.uniform(jax.random.key(0), (T, 2, 5), minval=-0.5, maxval=3.0)
    w = jax.random.normal(jax.random.key(1), x.shape)
    kw = dict(thresholds=(0.5, 1.5), tau=0.5, surrogate=mj.triangle(1.0))
    layer = mj.nn.MLF(**kw)
    v = layer.init(jax.random.key(2), x)
    assert not jax.tree.leaves(v)
    np.testing.assert_array_equal(layer.apply(v, x), mj.mlf(x, **kw))
    g_layer = jax.grad(lambda x: (layer.apply(v, x) * w).sum())(x)
    g_pure = jax.grad(lambda x: (mj.mlf(x, **kw) * w).sum())(x)
    np.testing.assert_array_equal(g_layer, g_pure)


# ---------------------------------------------------------------------------
# Initial values
# ---------------------------------------------------------------------------


def test_learned_constants_start_at_the_given_values():
    x = jax.random.uniform(jax.random.key(3), (4, 3, 6), minval=-0.5, maxval=3.5)
    kw = dict(thresholds=(0.5, 1.5, 2.1), tau=0.3)
    layer = mj.nn.MLF(**kw, learn_tau=True, learn_thresholds=True)
    v = layer.init(jax.random.key(4), x)
    params = v["params"]
    assert {k: p.shape for k, p in params.items()} == {"tau_logit": (), "thresholds_raw": (3,)}
    assert all(p.dtype == jnp.float32 for p in params.values())
    th, tau = layer.constants(params)
    np.testing.assert_allclose(th, kw["thresholds"], rtol=1e-6)
    np.testing.assert_allclose(tau, 0.3, rtol=1e-6)
    np.testing.assert_array_equal(layer.apply(v, x), mj.mlf(x, **kw))
    # one of the two alone
    only_tau = mj.nn.MLF(**kw, learn_tau=True).init(jax.random.key(4), x)["params"]
    only_th = mj.nn.MLF(**kw, learn_thresholds=True).init(jax.random.key(4), x)["params"]
    assert set(only_tau) == {"tau_logit"} and set(only_th) == {"thresholds_raw"}
    assert mj.nn.MLF(**kw, learn_tau=True).constants(only_tau)[0] == kw["thresholds"]


@pytest.mark.parametrize(
    "kw, message",
    [
        (dict(tau=1.0, learn_tau=True), "strictly between 0 and 1"),
        (dict(tau=0.0, learn_tau=True), "strictly between 0 and 1"),
        (dict(thresholds=(0.0, 1.0), learn_thresholds=True), "positive and strictly"),
        (dict(thresholds=(-0.3, 0.7), learn_thresholds=True), "positive and strictly"),
    ],
)
def test_constants_that_cannot_be_learned_are_refused(kw, message):
    with pytest.raises(ValueError, match=message):
        mj.nn.MLF(**kw).init(jax.random.key(0), jnp.ones((2, 1, 3)))


# ---------------------------------------------------------------------------
# Gradients against finite differences (float64)
# ---------------------------------------------------------------------------


def _layer64(**kw):
    return mj.nn.MLF(surrogate=SIG, param_dtype=jnp.float64, **kw)


def test_parameter_gradients_follow_the_chain_rule_through_the_parameter_maps():
    """d loss / d raw = J^T (d loss / d constants), J by central differences of the maps,
    d loss / d constants from the pure function with traced constants."""
    with jax.enable_x64(True):
        rng = np.random.default_rng(0)
        x = jnp.asarray(rng.uniform(-0.5, 3.5, (4, 64)))
        w = jnp.asarray(rng.normal(size=x.shape))
        layer = _layer64(thresholds=(0.5, 1.5, 2.5), tau=0.3, learn_tau=True, learn_thresholds=True)
        params = layer.init(jax.random.key(0), x)["params"]
        # both gradients under jit: one compilation each, not one per eager operation
        grads = jax.jit(jax.grad(lambda p: (layer.apply({"params": p}, x) * w).sum()))(params)

        th, tau = layer.constants(params)
        g_th, g_tau = jax.jit(
            jax.grad(
                lambda th, tau: (mj.mlf(x, thresholds=th, tau=tau, surrogate=SIG) * w).sum(),
                argnums=(0, 1),
            )
        )(th, tau)
        raw, logit = np.asarray(params["thresholds_raw"]), np.asarray(params["tau_logit"])
        jac = np.stack(
            [
                _central(lambda r, k=k: mj.reparam.thresholds_from_raw(jnp.asarray(r))[k], raw)
                for k in range(3)
            ]
        )  # jac[k, j] = d th_k / d raw_j
        d_tau = _central(lambda v: mj.reparam.leak_from_logit(jnp.asarray(v)), logit)
        np.testing.assert_allclose(grads["thresholds_raw"], jac.T @ np.asarray(g_th), rtol=1e-7)
        np.testing.assert_allclose(grads["tau_logit"], d_tau * np.asarray(g_tau), rtol=1e-7)
        assert np.all(np.abs(np.asarray(g_th)) > 1e-3) and abs(float(g_tau)) > 1e-3


def test_leak_gradient_of_the_membrane_potentials_matches_finite_differences():
    """With a detached reset the potentials are smooth in tau while no spike flips."""
    with jax.enable_x64(True):
        rng = np.random.default_rng(1)
        x = jnp.asarray(rng.uniform(0.0, 3.0, (6, 2, 40)))
        w = jnp.asarray(rng.normal(size=(6, 2, 2, 40)))  # [T, K, B, N]
        layer = _layer64(thresholds=(0.6, 1.6), tau=0.4, detach_reset=True, learn_tau=True)
        logit = layer.init(jax.random.key(0), x)["params"]["tau_logit"]

        @jax.jit
        def run(v):
            out, state = layer.apply(
                {"params": {"tau_logit": v}}, x, mutable=[mj.nn.RECORD_COLLECTION]
            )
            (u,) = state[mj.nn.RECORD_COLLECTION]["membrane"]
            return out, (u * w).sum()

        spikes_lo, _ = run(logit - H)
        spikes_hi, _ = run(logit + H)
        np.testing.assert_array_equal(spikes_lo, spikes_hi)  # no spike flips within the step
        grad = jax.grad(lambda v: run(v)[1])(logit)
        fd = _central(lambda v: run(jnp.asarray(v))[1], np.asarray(logit))
        np.testing.assert_allclose(grad, fd, rtol=1e-6)
        assert abs(float(grad)) > 1e-2


def test_threshold_gradient_at_one_step_matches_finite_differences_of_the_relaxation():
    """At T = 1, o = sum_k H(x - th_k): the surrogate gradient is exactly the derivative of
    sum_k S(x - th_k), S the surrogate's relaxation (whose derivative is its grad)."""
    with jax.enable_x64(True):
        rng = np.random.default_rng(2)
        x = jnp.asarray(rng.uniform(-0.5, 3.5, (1, 300)))
        w = jnp.asarray(rng.normal(size=x.shape))
        layer = _layer64(thresholds=(0.5, 1.5, 2.5), learn_thresholds=True)
        raw = layer.init(jax.random.key(0), x)["params"]["thresholds_raw"]
        grad = jax.grad(lambda r: (layer.apply({"params": {"thresholds_raw": r}}, x) * w).sum())(
            raw
        )

        def relaxed(r):
            th = mj.reparam.thresholds_from_raw(jnp.asarray(r))
            return (w[..., None] * SIG.relaxation(x[..., None] - th)).sum()

        np.testing.assert_allclose(grad, _central(relaxed, np.asarray(raw)), rtol=1e-6)


# ---------------------------------------------------------------------------
# Kernels with learned constants
# ---------------------------------------------------------------------------


def test_the_fused_kernel_gives_the_scans_parameter_gradients():
    x = jax.random.uniform(jax.random.key(5), (12, 4, 16), minval=-0.5, maxval=3.5)
    w = jax.random.normal(jax.random.key(6), x.shape)
    kw = dict(tau=0.3, surrogate=SIG, learn_tau=True, learn_thresholds=True)
    params = mj.nn.MLF(**kw).init(jax.random.key(0), x)["params"]
    out, grads = {}, {}
    for impl in ("scan", "fused"):
        layer = mj.nn.MLF(**kw, impl=impl)
        out[impl] = layer.apply({"params": params}, x)
        # under jit: one compilation, not one per eager operation
        grads[impl] = jax.jit(jax.grad(lambda p, m=layer: (m.apply({"params": p}, x) * w).sum()))(
            params
        )
    jaxpr = str(
        jax.make_jaxpr(lambda p: mj.nn.MLF(**kw, impl="fused").apply({"params": p}, x))(params)
    )
    assert "custom_vjp" in jaxpr  # the fused kernel did run with traced constants
    np.testing.assert_array_equal(out["scan"], out["fused"])
    for name in params:
        np.testing.assert_allclose(grads["fused"][name], grads["scan"][name], rtol=1e-5)


def test_pallas_with_learned_constants_falls_back_to_the_auto_choice():
    x = jax.random.uniform(jax.random.key(7), (3, 2, 8), maxval=3.0)
    kw = dict(learn_tau=True, learn_thresholds=True)
    params = mj.nn.MLF(**kw).init(jax.random.key(0), x)["params"]
    pallas = mj.nn.MLF(**kw, impl="pallas")
    jaxpr = str(jax.make_jaxpr(lambda p: pallas.apply({"params": p}, x))(params))
    assert "pallas_call" not in jaxpr
    np.testing.assert_array_equal(
        pallas.apply({"params": params}, x),
        mj.nn.MLF(**kw, impl="scan").apply({"params": params}, x),
    )
