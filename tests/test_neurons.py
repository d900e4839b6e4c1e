"""LIF and MLF dynamics: hand-checked sequences and hand-derived BPTT gradients."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import mlf_jax as mj

TAU = 0.25
WIDTH = 1.0
THRESHOLDS = (0.6, 1.6, 2.6)


# ---------------------------------------------------------------------------
# Forward: spike sequences for constant inputs, computed by hand.
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value, expected",
    [
        (1.5, [1, 2, 1, 2, 1, 2]),
        (2.0, [2, 2, 3, 2, 2, 3]),
        (0.5, [0, 1, 0, 1, 0, 1]),
    ],
)
def test_mlf_constant_input_sequences(value, expected):
    out = mj.mlf(jnp.full((6,), value))
    np.testing.assert_array_equal(out, expected)


def test_lif_constant_input_sequence():
    # u: 0.5 (no), 0.625 (spike), reset -> 0.5 (no), 0.625 (spike)
    np.testing.assert_array_equal(mj.lif(jnp.full((4,), 0.5)), [0, 1, 0, 1])
    # threshold 1.6, input 1.5: 1.5, 1.875 (spike), 1.5, 1.875 (spike)
    np.testing.assert_array_equal(mj.lif(jnp.full((4,), 1.5), threshold=1.6), [0, 1, 0, 1])


def test_mlf_potentials_by_hand():
    _, u = mj.mlf(jnp.full((3,), 1.5), return_potential=True)
    assert u.shape == (3, 3)
    expected = [
        [1.5, 1.5, 1.5],  # t=0: every level sees x
        [1.5, 1.875, 1.875],  # level 1 reset; others 0.25 * 1.5 + 1.5
        [1.5, 1.5, 0.25 * 1.875 + 1.5],  # level 2 reset after its spike at t=1
    ]
    np.testing.assert_allclose(u, expected, rtol=1e-6)


def test_k1_mlf_equals_lif():
    x = jax.random.uniform(jax.random.key(1), (7, 5, 3), minval=-0.5, maxval=2.5)
    for detach in (False, True):

        def f_mlf(x, detach=detach):
            return (mj.mlf(x, thresholds=(0.7,), detach_reset=detach) * x).sum()

        def f_lif(x, detach=detach):
            return (mj.lif(x, threshold=0.7, detach_reset=detach) * x).sum()

        np.testing.assert_array_equal(mj.mlf(x, thresholds=(0.7,)), mj.lif(x, threshold=0.7))
        # under jit: one compilation per gradient, not one per eager operation
        np.testing.assert_allclose(
            jax.jit(jax.grad(f_mlf))(x), jax.jit(jax.grad(f_lif))(x), rtol=1e-6
        )


def test_mlf_is_a_sum_of_lif_neurons_vmapped_over_thresholds():
    x = jax.random.uniform(jax.random.key(2), (5, 11), minval=-1.0, maxval=4.0)
    th = jnp.asarray([0.4, 1.1, 2.0, 3.3])
    w = jax.random.normal(jax.random.key(3), x.shape)

    def via_vmap(x):
        per_level = jax.vmap(lambda t: mj.lif(x, threshold=t))(th)  # [K, T, N]
        return per_level.sum(0)

    np.testing.assert_array_equal(mj.mlf(x, thresholds=th), via_vmap(x))
    g1 = jax.jit(jax.grad(lambda x: (mj.mlf(x, thresholds=th) * w).sum()))(x)
    g2 = jax.jit(jax.grad(lambda x: (via_vmap(x) * w).sum()))(x)
    np.testing.assert_allclose(g1, g2, rtol=1e-6, atol=1e-7)


def test_any_trailing_shape_is_elementwise():
    x = jax.random.uniform(jax.random.key(4), (4, 2, 3, 5), maxval=3.0)
    flat = mj.mlf(x.reshape(4, -1)).reshape(x.shape)
    np.testing.assert_array_equal(mj.mlf(x), flat)
    # one element alone gives the same sequence as inside the batch
    np.testing.assert_array_equal(mj.mlf(x[:, 1, 2, 3]), mj.mlf(x)[:, 1, 2, 3])


def test_step_functions_compose_to_the_multistep_function():
    x = jax.random.uniform(jax.random.key(5), (6, 4), maxval=3.0)
    state, outs = mj.mlf_init((4,), 3), []
    for t in range(6):
        state, o = mj.mlf_step(state, x[t])
        outs.append(o)
    np.testing.assert_array_equal(jnp.stack(outs), mj.mlf(x))


# ---------------------------------------------------------------------------
# Backward: BPTT derived by hand (rectangular surrogate, width a).
#   u_t = tau u_{t-1} (1 - o_{t-1}) + x_t,  o_t = H(u_t - th),  s_t = g(u_t - th)
#   du_{t+1}/du_t = tau (1 - o_t) - tau u_t s_t     (second term: the reset path)
# Loss L = sum_t w_t o_t; dL/dx_t = dL/du_t.
# ---------------------------------------------------------------------------


def _g(z):
    return np.where(np.abs(z) < WIDTH / 2, 1.0 / WIDTH, 0.0)


def _lif_forward_np(x, th):
    u, o, us, os_ = np.zeros_like(x[0]), np.zeros_like(x[0]), [], []
    for t in range(len(x)):
        u = TAU * u * (1 - o) + x[t]
        o = (u > th).astype(float)
        us.append(u)
        os_.append(o)
    return us, os_


def _hand_grad_T2(x, w, th, detach):
    (u0, u1), (o0, o1) = _lif_forward_np(x, th)
    s0, s1 = _g(u0 - th), _g(u1 - th)
    reset0 = 0.0 if detach else TAU * u0 * s0
    d1 = w[1] * s1
    d0 = w[0] * s0 + d1 * (TAU * (1 - o0) - reset0)
    return np.stack([d0, d1])


def _hand_grad_T3(x, w, th, detach):
    (u0, u1, u2), (o0, o1, o2) = _lif_forward_np(x, th)
    s0, s1, s2 = _g(u0 - th), _g(u1 - th), _g(u2 - th)
    reset0 = 0.0 if detach else TAU * u0 * s0
    reset1 = 0.0 if detach else TAU * u1 * s1
    d2 = w[2] * s2
    d1 = w[1] * s1 + d2 * (TAU * (1 - o1) - reset1)
    d0 = w[0] * s0 + d1 * (TAU * (1 - o0) - reset0)
    return np.stack([d0, d1, d2])


HAND = {2: _hand_grad_T2, 3: _hand_grad_T3}


def _inputs(T, n=2000, seed=0):
    rng = np.random.default_rng(seed)
    return rng.uniform(-0.5, 3.5, (T, n)), rng.normal(size=(T, n))


@pytest.mark.parametrize("T", [2, 3])
@pytest.mark.parametrize("detach", [False, True])
def test_lif_bptt_matches_hand_derivation(T, detach):
    x, w = _inputs(T, seed=T)
    g = jax.grad(lambda x: (mj.lif(x, detach_reset=detach) * w).sum())(jnp.asarray(x, jnp.float32))
    np.testing.assert_allclose(g, HAND[T](x, w, 0.6, detach), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("T", [2, 3])
@pytest.mark.parametrize("detach", [False, True])
def test_mlf_bptt_matches_hand_derivation(T, detach):
    x, w = _inputs(T, seed=10 + T)
    g = jax.grad(lambda x: (mj.mlf(x, detach_reset=detach) * w).sum())(jnp.asarray(x, jnp.float32))
    expected = sum(HAND[T](x, w, th, detach) for th in THRESHOLDS)
    np.testing.assert_allclose(g, expected, rtol=1e-5, atol=1e-5)


def test_gradient_flows_through_reset_unless_detached():
    # One element: x0 = 0.9 (spikes at level 1, inside its window), x1 = 0.7.
    x = jnp.asarray([0.9, 0.7])
    w = jnp.asarray([0.0, 1.0])
    g = lambda d: jax.grad(lambda x: (mj.lif(x, detach_reset=d) * w).sum())(x)  # noqa: E731
    # u1 = 0.25 * 0.9 * (1 - 1) + 0.7 = 0.7, s1 = 1; du1/dx0 = 0.25 * (1 - 1) - 0.25 * 0.9 * 1.
    np.testing.assert_allclose(g(False), [-0.225, 1.0], rtol=1e-6)
    np.testing.assert_allclose(g(True), [0.0, 1.0], rtol=1e-6)


def test_gradients_with_respect_to_threshold_and_tau():
    x = jnp.asarray([0.5, 0.5])  # u0 = 0.5 (no spike, in window), u1 = 0.625 (spike)
    # L = o1 = H(u1 - th), u1 = tau u0 (1 - H(u0 - th)) + x1, s0 = s1 = 1:
    #   dL/dth  = s1 (du1/dth - 1) = s1 (tau u0 s0 - 1) = 0.125 - 1 = -0.875
    #   dL/dtau = s1 u0 (1 - o0) = 0.5
    dth = jax.grad(lambda th: mj.lif(x, threshold=th)[1])(0.6)
    dtau = jax.grad(lambda tau: mj.lif(x, tau=tau)[1])(0.25)
    np.testing.assert_allclose([dth, dtau], [-0.875, 0.5], rtol=1e-6)
    # MLF: traced thresholds work and each level gets its own derivative
    dths = jax.grad(lambda th: mj.mlf(jnp.asarray([1.5, 1.5]), thresholds=th)[1])(
        jnp.asarray(THRESHOLDS)
    )
    # u0 = 1.5 for all levels; u1 = 1.5, 1.875, 1.875. Inside a window |u - th| < 0.5:
    # level 1 never (0.9, 0.9), level 2 at both steps (0.1, 0.275), level 3 never (0.725 at t=1).
    # Level 2: s1 (tau u0 s0 - 1) = 0.25 * 1.5 - 1 = -0.625.
    np.testing.assert_allclose(dths, [0.0, -0.625, 0.0], rtol=1e-6)


# ---------------------------------------------------------------------------
# Transformations and options.
# ---------------------------------------------------------------------------


def test_jit_vmap_checkpoint_and_unroll_agree():
    x = jax.random.uniform(jax.random.key(6), (5, 3, 8), maxval=3.0)
    w = jax.random.normal(jax.random.key(7), x.shape)

    def loss(x, unroll=True):
        return (mj.mlf(x, unroll=unroll) * w).sum()

    ref = jax.grad(loss)(x)
    np.testing.assert_allclose(jax.jit(jax.grad(loss))(x), ref, rtol=1e-6)
    np.testing.assert_allclose(jax.grad(jax.checkpoint(loss))(x), ref, rtol=1e-6)
    # scan vs unrolled: the same sums, in a different float32 association (under jit: one
    # compilation each)
    for unroll in (1, 2):
        g = jax.jit(jax.grad(lambda x, u=unroll: loss(x, unroll=u)))(x)
        np.testing.assert_allclose(g, ref, rtol=1e-5, atol=1e-7)
    per_batch = jax.vmap(lambda xb: mj.mlf(xb), in_axes=1, out_axes=1)(x)
    np.testing.assert_array_equal(per_batch, mj.mlf(x))


@pytest.mark.parametrize(
    "thresholds", [(0.6, 0.6), (1.6, 0.6), (0.6, 1.6, 1.0), (), ((0.6, 1.6),), (0.6, float("nan"))]
)
def test_bad_thresholds_are_rejected(thresholds):
    with pytest.raises(ValueError, match="thresholds"):
        mj.mlf(jnp.ones((2, 3)), thresholds=thresholds)


@pytest.mark.parametrize("tau", [-0.1, 1.5, (0.2, 0.3)])
def test_bad_tau_is_rejected(tau):
    with pytest.raises(ValueError, match="tau"):
        mj.lif(jnp.ones((2, 3)), tau=tau)


def test_scalar_and_integer_inputs_are_rejected():
    with pytest.raises(ValueError, match=r"\[T, \.\.\.\]"):
        mj.mlf(jnp.float32(1.0))
    with pytest.raises(TypeError, match="floating"):
        mj.mlf(jnp.ones((3, 2), jnp.int32))


def test_mlf_step_rejects_state_with_wrong_number_of_levels():
    with pytest.raises(ValueError, match="2 levels but there are 3 thresholds"):
        mj.mlf_step(mj.mlf_init((4,), 2), jnp.ones(4))


def test_auto_unroll_policy():
    assert mj.neurons.auto_unroll(1) is True and mj.neurons.auto_unroll(10) is True
    assert mj.neurons.auto_unroll(11) == 1 and mj.neurons.auto_unroll(40) == 1
    assert mj.neurons.auto_unroll(40, 4) == 4 and mj.neurons.auto_unroll(2, 1) == 1
    # both policies compute the same thing
    x = jax.random.uniform(jax.random.key(8), (12, 5), maxval=3.0)
    np.testing.assert_array_equal(mj.mlf(x), mj.mlf(x, unroll=True))


def test_long_sequences_dispatch_to_the_fused_kernel_with_the_same_gradients():
    x = jax.random.uniform(jax.random.key(11), (16, 32), minval=-0.5, maxval=3.5)
    w = jax.random.normal(jax.random.key(12), x.shape)
    jaxpr = str(jax.make_jaxpr(lambda x: mj.mlf(x))(x))
    assert "custom_vjp" in jaxpr  # T = 16 > MAX_UNROLLED_STEPS: the fused kernel
    g_default = jax.jit(jax.grad(lambda x: (mj.mlf(x) * w).sum()))(x)
    g_scan = jax.jit(jax.grad(lambda x: (mj.mlf(x, unroll=1) * w).sum()))(x)
    np.testing.assert_allclose(g_default, g_scan, rtol=1e-6, atol=1e-6)


# ---------------------------------------------------------------------------
# Inputs that once gave wrong numbers or unreadable errors.
# ---------------------------------------------------------------------------


def test_integer_input_keeps_fractional_thresholds():
    # u = 1 (no spike at 1.5), then 0.25 * 1 + 1 = 1.25 (still none); with the threshold
    # rounded to the input's dtype (1) both steps fired.
    state = mj.mlf_init((1,), 1)
    spikes = []
    for _ in range(2):
        state, o = mj.mlf_step(state, jnp.ones((1,), jnp.int32), thresholds=(1.5,))
        spikes.append(float(o[0]))
    assert spikes == [0.0, 0.0]
    assert float(state[0].u[0]) == 1.25


@pytest.mark.parametrize("T", [3, 11])  # the scan / beyond it, where 'auto' takes the kernel
def test_lif_per_unit_threshold_equals_one_lif_per_unit(T):
    x = jax.random.uniform(jax.random.key(T), (T, 5), maxval=2.0)
    th = jnp.linspace(0.3, 1.5, 5)
    got = mj.lif(x, threshold=th)
    want = jnp.stack([mj.lif(x[:, j], threshold=float(th[j])) for j in range(5)], axis=1)
    np.testing.assert_array_equal(got, want)
    grad = jax.grad(lambda th: mj.lif(x, threshold=th).sum())(th)  # learned per unit
    assert grad.shape == (5,)


def test_shape_checks_hold_under_jit():
    x = jnp.ones((4, 3))
    with pytest.raises(ValueError, match="tau must be a scalar"):
        jax.jit(lambda tau: mj.mlf(x, tau=tau))(jnp.full((3,), 0.5))
    with pytest.raises(ValueError, match="tau must be a scalar"):
        jax.jit(lambda tau: mj.lif(x, tau=tau))(jnp.full((3,), 0.5))
    with pytest.raises(ValueError, match="thresholds must be a non-empty 1-D"):
        jax.jit(lambda th: mj.mlf(x, thresholds=th))(jnp.ones((2, 2)))
    # a tuple of traced thresholds is taken as one array (it used to fail on the tuple)
    out = jax.jit(lambda a, b: mj.mlf(x, thresholds=(a, b)))(0.6, 1.6)
    np.testing.assert_array_equal(out, mj.mlf(x, thresholds=(0.6, 1.6)))


@pytest.mark.parametrize("fn", [mj.lif, mj.mlf])
def test_an_empty_time_axis_is_one_clear_error(fn):
    with pytest.raises(ValueError, match=r"T >= 1 time steps, got shape \(0, 3\)"):
        fn(jnp.ones((0, 3)))


def test_lif_with_several_thresholds_points_to_mlf():
    with pytest.raises(ValueError, match=r"got shape \(2,\); for several thresholds.*mlf"):
        mj.lif(jnp.ones((4, 3)), threshold=(0.6, 1.6))


def test_init_takes_a_shape_or_a_template_step_so_the_zoo_wrapper_takes_it():
    x = jnp.linspace(0.0, 2.0, 12, dtype=jnp.float32).reshape(4, 3)
    state = mj.lif_init(x[0])
    assert state.u.shape == (3,) and state.u.dtype == jnp.float32
    assert mj.lif_init((2, 3)).u.shape == (2, 3)

    def step(state, xt, params):
        return mj.lif_step(state, xt, tau=0.5)

    np.testing.assert_array_equal(mj.zoo.sequence(step, mj.lif_init)(x), mj.lif(x, tau=0.5))
    assert len(mj.mlf_init(x[0], levels=2)) == 2


def test_a_wrong_state_is_named_not_broadcast():
    x = jnp.ones(3)
    with pytest.raises(TypeError, match=r"mlf_step takes an MLF state, .* got one LIFState"):
        mj.mlf_step(mj.lif_init(x), x)
    with pytest.raises(TypeError, match=r"lif_step takes a LIFState .*, got an MLF state"):
        mj.lif_step(mj.mlf_init(x, levels=3), x)
    with pytest.raises(ValueError, match=r"state has shape \(1,\) but the input step has shape"):
        mj.lif_step(mj.lif_init((1,)), x)
    with pytest.raises(ValueError, match="state has shape"):  # shapes are checked under jit
        jax.jit(lambda s, x: mj.lif_step(s, x))(mj.lif_init((1,)), x)
