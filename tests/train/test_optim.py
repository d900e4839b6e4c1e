"""The optimiser equals PyTorch's SGD update written out by hand; LR schedules."""

import jax.numpy as jnp
import numpy as np
import optax
import pytest

from mlf_jax.train import learning_rate_schedule, sgd


def test_sgd_with_coupled_weight_decay_matches_the_pytorch_update():
    lr, mom, wd = 0.1, 0.9, 1e-2
    p0 = np.array([1.0, -2.0])
    g1, g2 = np.array([0.5, 0.25]), np.array([-1.0, 2.0])
    # torch.optim.SGD: d = g + wd p; buf = mom buf + d (buf = d at step 1); p -= lr buf
    buf1 = g1 + wd * p0
    p1 = p0 - lr * buf1
    buf2 = mom * buf1 + (g2 + wd * p1)
    p2 = p1 - lr * buf2

    tx = sgd(lr, mom, wd)
    p = jnp.asarray(p0, jnp.float32)
    s = tx.init(p)
    for g in (g1, g2):
        u, s = tx.update(jnp.asarray(g, jnp.float32), s, p)
        p = optax.apply_updates(p, u)
    np.testing.assert_allclose(p, p2, rtol=1e-6)


def test_step_schedule_decays_by_ten_every_40_epochs():
    f = learning_rate_schedule(0.1, 10, 110, kind="step", decay_epochs=40, decay_factor=0.1)
    for step, lr in [(0, 0.1), (399, 0.1), (400, 0.01), (799, 0.01), (800, 0.001), (1099, 0.001)]:
        np.testing.assert_allclose(f(step), lr, rtol=1e-6)


def test_cosine_schedule_with_warmup():
    f = learning_rate_schedule(0.2, 10, 2, kind="cosine", warmup_epochs=0.5)
    np.testing.assert_allclose([f(0), f(5)], [0.0, 0.2], atol=1e-7)
    # cosine over the remaining 15 steps: halfway (step 5 + 7.5) is 0.1
    np.testing.assert_allclose(f(5 + 7.5), 0.1, rtol=1e-5)
    np.testing.assert_allclose(f(20), 0.0, atol=1e-7)


def test_unknown_schedule():
    with pytest.raises(ValueError, match="unknown schedule 'linear'"):
        learning_rate_schedule(0.1, 10, 2, kind="linear")


def test_with_average_keeps_the_moving_average_of_the_updated_parameters_by_hand():
    from mlf_jax.train import averaged_params, with_average

    lr, mom, wd, decay = 0.1, 0.9, 1e-2, 0.75
    grads = [np.array([0.5, 0.25]), np.array([-1.0, 2.0]), np.array([0.3, -0.1])]
    # by hand: the SGD of the test above, then a <- decay a + (1 - decay) p, from a = p0
    p, buf, a = np.array([1.0, -2.0]), None, np.array([1.0, -2.0])
    for g in grads:
        d = g + wd * p
        buf = d if buf is None else mom * buf + d
        p = p - lr * buf
        a = decay * a + (1 - decay) * p

    tx = with_average(sgd(lr, mom, wd), decay)
    q = jnp.asarray([1.0, -2.0], jnp.float32)
    s = tx.init(q)
    for g in grads:
        u, s = tx.update(jnp.asarray(g, jnp.float32), s, q)
        q = optax.apply_updates(q, u)
    np.testing.assert_allclose(q, p, rtol=1e-6)  # the updates are sgd's, unchanged
    np.testing.assert_allclose(averaged_params(s), a, rtol=1e-6)


def test_with_average_refuses_a_bad_decay_missing_params_and_a_plain_state():
    from mlf_jax.train import averaged_params, with_average

    for decay in (-0.1, 1.0):
        with pytest.raises(ValueError, match="decay must be in"):
            with_average(sgd(0.1), decay)
    tx = with_average(sgd(0.1), 0.9)
    p = jnp.ones(2)
    with pytest.raises(ValueError, match="needs the parameters"):
        tx.update(p, tx.init(p))
    with pytest.raises(TypeError, match="with_average"):
        averaged_params(sgd(0.1).init(p))
