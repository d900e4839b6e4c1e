"""The generic sequence wrapper and the neuron zoo, against slow NumPy loops of the equations.

Forward: every zoo neuron against a NumPy loop written here from its equations (float64).
Backward: the adaptive LIF's surrogate gradients (input and all four parameters) and the
PLIF's leak gradient against the BPTT recurrences derived by hand and run in NumPy.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import mlf_jax as mj
from mlf_jax import zoo

ALPHA = 3.0  # sigmoid surrogate: gradients non-zero almost everywhere


def _sigmoid_grad(z):
    s = 1.0 / (1.0 + np.exp(-ALPHA * z))
    return ALPHA * s * (1.0 - s)


def _inputs(shape, seed, low=-0.5, high=2.5):
    return np.random.default_rng(seed).uniform(low, high, shape)


# ---------------------------------------------------------------------------
# NumPy references (forward), from the equations of the zoo's docstrings.
# ---------------------------------------------------------------------------


def _np_lif(x, threshold, tau):
    u, o, us, os_ = np.zeros_like(x[0]), np.zeros_like(x[0]), [], []
    for t in range(len(x)):
        u = tau * u * (1.0 - o) + x[t]
        o = (u > threshold).astype(float)
        us.append(u)
        os_.append(o)
    return np.stack(os_), np.stack(us)


def _np_mlf(x, thresholds, tau):
    levels = [_np_lif(x, th, tau) for th in thresholds]
    return sum(o for o, _ in levels), np.stack([u for _, u in levels], axis=1)


def _np_alif(x, threshold, tau, rho, beta):
    u, o, b = (np.zeros_like(x[0]) for _ in range(3))
    out = {"o": [], "u": [], "b": []}
    for t in range(len(x)):
        u = tau * u * (1.0 - o) + x[t]
        b = rho * b + beta * o
        o = (u - threshold - b > 0).astype(float)
        for k, v in (("o", o), ("u", u), ("b", b)):
            out[k].append(v)
    return {k: np.stack(v) for k, v in out.items()}


# ---------------------------------------------------------------------------
# Forward
# ---------------------------------------------------------------------------


def test_if_lif_plif_forward_match_numpy_loops():
    with jax.enable_x64(True):
        x = _inputs((12, 40), seed=0)
        xj = jnp.asarray(x)
        o, states = zoo.IF(threshold=1.3)(xj, return_states=True)
        ref_o, ref_u = _np_lif(x, 1.3, 1.0)
        np.testing.assert_array_equal(o, ref_o)
        np.testing.assert_allclose(states.u, ref_u, rtol=1e-12)

        o, states = zoo.LIF(threshold=0.9, tau=0.6)(xj, return_states=True)
        ref_o, ref_u = _np_lif(x, 0.9, 0.6)
        np.testing.assert_array_equal(o, ref_o)
        np.testing.assert_allclose(states.u, ref_u, rtol=1e-12)

        plif = zoo.PLIF(threshold=0.9, tau=0.6)
        np.testing.assert_allclose(plif.params()["tau_logit"], np.log(0.6 / 0.4), rtol=1e-12)
        o, states = plif(xj, return_states=True)
        np.testing.assert_array_equal(o, ref_o)
        np.testing.assert_allclose(states.u, ref_u, rtol=1e-12)
        # a learned value: tau = sigmoid(w)
        w = -0.3
        o, states = plif(xj, {"tau_logit": w}, return_states=True)
        ref_o, ref_u = _np_lif(x, 0.9, 1.0 / (1.0 + np.exp(-w)))
        np.testing.assert_array_equal(o, ref_o)
        np.testing.assert_allclose(states.u, ref_u, rtol=1e-12)


def test_mlf_forward_matches_numpy_loop():
    with jax.enable_x64(True):
        x = _inputs((9, 30), seed=1, high=4.0)
        model = zoo.MLF(thresholds=(0.5, 1.4, 2.2), tau=0.4)
        o, states = model(jnp.asarray(x), return_states=True)
        ref_o, ref_u = _np_mlf(x, (0.5, 1.4, 2.2), 0.4)
        np.testing.assert_array_equal(o, ref_o)
        u = jax.vmap(model.potential)(states)  # [T, K, N]
        np.testing.assert_allclose(u, ref_u, rtol=1e-12)


def test_adaptive_lif_forward_matches_numpy_loop():
    with jax.enable_x64(True):
        x = _inputs((20, 50), seed=2, low=0.0, high=2.0)
        model = zoo.AdaptiveLIF(threshold=0.7, tau=0.5, rho=0.7, beta=0.4)
        o, states = model(jnp.asarray(x), return_states=True)
        ref = _np_alif(x, 0.7, 0.5, 0.7, 0.4)
        np.testing.assert_array_equal(o, ref["o"])
        np.testing.assert_allclose(states.u, ref["u"], rtol=1e-12)
        np.testing.assert_allclose(states.b, ref["b"], rtol=1e-12, atol=1e-15)
        np.testing.assert_allclose(
            jax.vmap(model.potential)(states)[:, 0], ref["u"] - ref["b"], rtol=1e-12, atol=1e-15
        )
        assert 0 < ref["o"].mean() < 0.9  # adaptation visible: not all silent, not saturated


def test_adaptive_lif_by_hand_for_a_constant_input():
    # x = 1.5, V_th = 0.6, tau = 0.25, rho = 0.8, beta = 0.5:
    # t0: u 1.5, b 0 -> spike; t1: u 1.5 (reset), b 0.5 -> 1.5 - 1.1 > 0 spike;
    # t2: u 1.5, b 0.9 -> 1.5 - 1.5 = 0, no spike; t3: u 1.875, b 1.22 -> 0.055 > 0 spike
    out = zoo.AdaptiveLIF()(jnp.full((4,), 1.5))
    np.testing.assert_array_equal(out, [1, 1, 0, 1])


# ---------------------------------------------------------------------------
# The zoo's LIF and MLF are the library's.
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("detach", [False, True])
def test_zoo_lif_and_mlf_equal_the_library_functions(detach):
    x = jax.random.uniform(jax.random.key(3), (6, 4, 7), minval=-0.5, maxval=3.5)
    w = jax.random.normal(jax.random.key(4), x.shape)
    cases = [
        (zoo.LIF(threshold=0.7, tau=0.3, detach_reset=detach),
         functools.partial(mj.lif, threshold=0.7, tau=0.3, detach_reset=detach)),
        (zoo.MLF(thresholds=(0.4, 1.2, 2.0), tau=0.3, detach_reset=detach),
         functools.partial(mj.mlf, thresholds=(0.4, 1.2, 2.0), tau=0.3, detach_reset=detach)),
    ]  # fmt: skip
    for model, library in cases:
        np.testing.assert_array_equal(model(x), library(x))
        g_zoo = jax.grad(lambda x, m=model: (m(x) * w).sum())(x)
        g_lib = jax.grad(lambda x, f=library: (f(x) * w).sum())(x)
        np.testing.assert_array_equal(g_zoo, g_lib)


# ---------------------------------------------------------------------------
# Backward: BPTT derived by hand.
#   u_t = tau u_{t-1} (1 - o_{t-1}) + x_t,  b_t = rho b_{t-1} + beta o_{t-1},
#   z_t = u_t - V_th - b_t,  o_t = H(z_t),  s_t = g(z_t),  L = sum_t w_t o_t.
# With dU_t = dL/du_t, dB_t = dL/db_t (total) and dO_t = dL/do_t (total, all later uses):
#   dO_t = w_t - tau u_t dU_{t+1} [reset; 0 if detached] + beta dB_{t+1}
#   dZ_t = s_t dO_t,  dU_t = dZ_t + tau (1 - o_t) dU_{t+1},  dB_t = -dZ_t + rho dB_{t+1}
#   dL/dx_t = dU_t,  dL/dV_th = -sum_t dZ_t,  dL/dtau = sum_t dU_t u_{t-1} (1 - o_{t-1}),
#   dL/drho = sum_t dB_t b_{t-1},  dL/dbeta = sum_t dB_t o_{t-1}
# (summed over units for the shared parameters). The LIF is the case beta = 0.
# ---------------------------------------------------------------------------


def _np_alif_grads(x, w, threshold, tau, rho, beta, detach):
    f = _np_alif(x, threshold, tau, rho, beta)
    u, o, b = f["u"], f["o"], f["b"]
    T = len(x)
    zero = np.zeros_like(x[0])
    dU_next, dB_next = zero, zero
    dx = np.zeros_like(x)
    g = {"threshold": 0.0, "tau": 0.0, "rho": 0.0, "beta": 0.0}
    for t in reversed(range(T)):
        reset = 0.0 if detach else tau * u[t] * dU_next
        dO = w[t] - reset + beta * dB_next
        dZ = _sigmoid_grad(u[t] - threshold - b[t]) * dO
        dU = dZ + tau * (1.0 - o[t]) * dU_next
        dB = -dZ + rho * dB_next
        dx[t] = dU
        g["threshold"] -= dZ.sum()
        if t > 0:
            g["tau"] += (dU * u[t - 1] * (1.0 - o[t - 1])).sum()
            g["rho"] += (dB * b[t - 1]).sum()
            g["beta"] += (dB * o[t - 1]).sum()
        dU_next, dB_next = dU, dB
    return dx, g


@pytest.mark.parametrize("detach", [False, True])
def test_adaptive_lif_surrogate_gradients_match_the_hand_derivation(detach):
    with jax.enable_x64(True):
        x = _inputs((10, 64), seed=5, low=0.0, high=2.0)
        w = np.random.default_rng(6).normal(size=x.shape)
        p = dict(threshold=0.7, tau=0.5, rho=0.7, beta=0.4)
        model = zoo.AdaptiveLIF(**p, surrogate=mj.sigmoid(ALPHA), detach_reset=detach)

        def loss(x, params):
            return (model(x, params) * w).sum()

        params = {k: jnp.float64(v) for k, v in p.items()}
        # under jit: one compilation, not one per eager operation
        dx, dparams = jax.jit(jax.grad(loss, argnums=(0, 1)))(jnp.asarray(x), params)
        ref_dx, ref_g = _np_alif_grads(x, w, **p, detach=detach)
        np.testing.assert_allclose(dx, ref_dx, rtol=1e-10, atol=1e-12)
        for name in p:
            np.testing.assert_allclose(dparams[name], ref_g[name], rtol=1e-10, err_msg=name)
        assert np.mean(np.asarray(dx) != 0) > 0.5  # a real test: most gradients non-zero


def test_plif_leak_gradient_is_the_lif_one_times_the_sigmoid_slope():
    with jax.enable_x64(True):
        x = _inputs((8, 64), seed=7)
        w = np.random.default_rng(8).normal(size=x.shape)
        model = zoo.PLIF(threshold=0.8, tau=0.35, surrogate=mj.sigmoid(ALPHA))
        logit = model.params()["tau_logit"]
        d_logit = jax.jit(jax.grad(lambda v: (model(jnp.asarray(x), {"tau_logit": v}) * w).sum()))(
            jnp.float64(logit)
        )
        _, ref = _np_alif_grads(x, w, 0.8, 0.35, 0.0, 0.0, detach=False)  # beta = 0: LIF
        sig = 1.0 / (1.0 + np.exp(-logit))
        np.testing.assert_allclose(d_logit, ref["tau"] * sig * (1.0 - sig), rtol=1e-10)


# ---------------------------------------------------------------------------
# The generic wrapper.
# ---------------------------------------------------------------------------


def _leaky_sum_step(state, x, params):
    """A non-spiking test neuron: s[t] = a s[t-1] + x[t]; outputs (s[t], 2 s[t])."""
    s = params["a"] * state + x
    return s, (s, 2.0 * s)


def test_sequence_runs_any_step_function_like_a_loop():
    x = jax.random.normal(jax.random.key(9), (7, 3))
    run = zoo.sequence(_leaky_sum_step, jnp.zeros_like, return_states=True)
    (s, twice), states = run(x, {"a": 0.5})
    ref, acc = [], np.zeros(3)
    for t in range(7):
        acc = 0.5 * acc + np.asarray(x[t])
        ref.append(acc)
    np.testing.assert_allclose(s, np.stack(ref), rtol=1e-6)
    np.testing.assert_allclose(twice, 2 * np.stack(ref), rtol=1e-6)
    np.testing.assert_allclose(states, np.stack(ref), rtol=1e-6)
    # every unroll gives the same numbers; jit and vmap work; params may be traced
    for unroll in (1, 2, True):
        out = zoo.sequence(_leaky_sum_step, jnp.zeros_like, unroll=unroll)(x, {"a": 0.5})
        np.testing.assert_allclose(out[0], s, rtol=1e-6)
    jitted = jax.jit(zoo.sequence(_leaky_sum_step, jnp.zeros_like))
    np.testing.assert_allclose(jitted(x, {"a": jnp.float32(0.5)})[0], s, rtol=1e-6)
    per_col = jax.vmap(
        lambda c: zoo.sequence(_leaky_sum_step, jnp.zeros_like)(c, {"a": 0.5})[0],
        in_axes=1,
        out_axes=1,
    )(x)
    np.testing.assert_allclose(per_col, s, rtol=1e-6)
    # d s[T-1] / d a by hand: sum_t t-th power terms; check with a closed form for x = 1
    ones = jnp.ones((4, 1))
    da = jax.grad(lambda a: zoo.sequence(_leaky_sum_step, jnp.zeros_like)(ones, {"a": a})[0][-1, 0])
    # s3 = 1 + a + a^2 + a^3 -> ds3/da = 1 + 2a + 3a^2 = 1 + 1 + 0.75 at a = 0.5
    np.testing.assert_allclose(da(0.5), 2.75, rtol=1e-6)


def test_zoo_models_are_hashable_and_compare_by_value():
    assert zoo.LIF(tau=0.5) == zoo.LIF(tau=0.5) and hash(zoo.LIF(tau=0.5)) == hash(zoo.LIF(tau=0.5))
    assert zoo.MLF(thresholds=[0.5, 1.5]).thresholds == (0.5, 1.5)
    assert zoo.LIF(surrogate="sigmoid").surrogate == mj.sigmoid()
    assert set(zoo.ZOO) == {"if", "lif", "mlf", "adaptive_lif", "plif"}


@pytest.mark.parametrize(
    "build, error, message",
    [
        (lambda: zoo.LIF(tau=1.5), ValueError, r"LIF tau must be in \[0, 1\], got 1.5"),
        (lambda: zoo.AdaptiveLIF(rho=-0.1), ValueError, "AdaptiveLIF rho must be in"),
        (lambda: zoo.MLF(thresholds=(1.0, 0.5)), ValueError, "strictly increasing"),
        (lambda: zoo.PLIF(tau=1.0), ValueError, "strictly between 0 and 1"),
        (lambda: zoo.PLIF(tau=0.0), ValueError, r"PLIF tau must be strictly between 0 and 1"),
        (lambda: zoo.IF(threshold="1"), TypeError, "IF threshold must be a Python number"),
        (lambda: zoo.LIF(surrogate="relu"), ValueError, "unknown surrogate 'relu'"),
        (lambda: zoo.LIF()(jnp.ones(3), {"beta": 1.0}), KeyError, "LIF has no parameter 'beta'"),
        (lambda: zoo.LIF()(jnp.float32(1.0)), ValueError, r"\[T, \.\.\.\]"),
        (lambda: zoo.LIF()(jnp.ones((2, 3), jnp.int32)), TypeError, "floating"),
        (lambda: zoo.sequence(None, jnp.zeros_like), TypeError, "callable step and init"),
    ],
)
def test_bad_settings_and_inputs_are_named(build, error, message):
    with pytest.raises(error, match=message):
        build()


def test_a_model_without_potential_says_what_is_missing_under_record():
    class Bare(mj.zoo.NeuronModel):
        def params(self):
            return {}

        def init(self, x0):
            return mj.lif_init(x0)

        def step(self, state, x, params):
            return mj.lif_step(state, x)

    layer = mj.nn.Neuron(model=Bare())
    x = jnp.ones((2, 1, 3))
    np.testing.assert_array_equal(layer.apply({}, x), mj.lif(x))  # runs without it
    with pytest.raises(NotImplementedError, match=r"Bare does not define potential\(state\)"):
        layer.apply({}, x, mutable=[mj.nn.RECORD_COLLECTION])
