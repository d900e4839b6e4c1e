"""The firing-rate regulariser of the train step and the per-layer activity step.

References are written independently of mlf_jax.train.activity: the spikes come from the
'intermediates' recording (mlf_jax.analysis, the scan), the loss is written out here, and
the unregularised step is today's step written out again.
"""

import functools
from collections.abc import Mapping

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import linen as nn

import mlf_jax as mj
from mlf_jax.train.activity import layer_firing_rates
from mlf_jax.train.parallel import AXIS, DataParallel

from .parallel_case import BATCH, batches, initial_state
from .parallel_case import model as parallel_model

WEIGHT, TARGET, LR = 0.5, 0.05, 0.1
#: the neuron layers of a ResNet-8, in forward order
LAYERS = 9


def _model(**kw):
    return mj.models.resnet(8, widths=(4, 4, 8), num_classes=3, time_steps=2, in_channels=1, **kw)


def _state(model, tx=None):
    return mj.train.create_train_state(
        model, tx or optax.sgd(LR), jax.random.key(0), np.zeros((BATCH, 8, 8, 1), np.float32)
    )


def _variables(state):
    return {"params": state.params, "batch_stats": state.batch_stats}


def _spikes_of(intermediates):
    """Every 'spikes' array sown in a (nested) intermediates dict, by walking it."""
    found = []

    def walk(node):
        for key, child in node.items():
            if key == "spikes":
                found.extend(child)
            elif isinstance(child, Mapping):
                walk(child)

    walk(intermediates)
    return found


def _independent_loss(model, batch_stats, x, labels, weight, target):
    """Cross-entropy plus weight * mean over layers of (rate - target)^2, written out."""

    def loss(params):
        logits, mutated = model.apply(
            {"params": params, "batch_stats": batch_stats},
            x,
            train=True,
            mutable=["intermediates", "batch_stats"],
        )
        logp = jax.nn.log_softmax(logits)
        ce = -jnp.mean(logp[jnp.arange(labels.shape[0]), labels])
        rates = [jnp.sum(s) / s.size for s in _spikes_of(mutated["intermediates"])]
        assert len(rates) == LAYERS
        return ce + weight * sum((r - target) ** 2 for r in rates) / len(rates)

    return loss


@pytest.fixture(scope="module")
def small_state():
    return _state(_model())


# -- off: exactly today's step ----------------------------------------------------------------


def _todays_step(state, batch):
    """The train step as it was before the regulariser existed."""

    def loss_fn(params):
        logits, updates = state.apply_fn(
            {"params": params, "batch_stats": state.batch_stats},
            batch["image"],
            train=True,
            mutable=["batch_stats"],
        )
        loss = optax.softmax_cross_entropy_with_integer_labels(logits, batch["label"]).mean()
        return loss, (logits, updates["batch_stats"])

    (loss, (logits, batch_stats)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
    metrics = {"loss": loss, "accuracy": jnp.mean(jnp.argmax(logits, -1) == batch["label"])}
    return state.apply_gradients(grads=grads, batch_stats=batch_stats), metrics


def test_off_is_bit_identical_to_todays_step():
    state = _state(_model(), mj.train.sgd(0.1, 0.9, 1e-3))
    off = functools.partial(mj.train.train_step, firing_rate_reg=0.0, firing_rate_target=0.3)
    ref, new = jax.jit(_todays_step), jax.jit(off)
    a = b = state
    for batch in batches()[:2]:
        a, ma = ref(a, batch)
        b, mb = new(b, batch)
        assert set(mb) == {"loss", "accuracy"}
        for k in ma:
            assert np.asarray(ma[k]).tobytes() == np.asarray(mb[k]).tobytes(), k
    for name in ("params", "batch_stats", "opt_state"):
        leaves_a = jax.tree.leaves(getattr(a, name))
        leaves_b = jax.tree.leaves(getattr(b, name))
        assert [np.asarray(x).tobytes() for x in leaves_a] == [
            np.asarray(x).tobytes() for x in leaves_b
        ], name


# -- on: the loss and its gradient ------------------------------------------------------------


@pytest.mark.parametrize("impl", ["scan", "fused"])
def test_regularised_loss_equals_a_hand_computation(impl):
    model = _model(neuron_impl=impl)
    state = _state(model)
    batch = batches()[0]
    _, metrics = jax.jit(
        functools.partial(mj.train.train_step, firing_rate_reg=WEIGHT, firing_rate_target=TARGET)
    )(state, batch)
    logits, records = mj.analysis.record(model, _variables(state), batch["image"], train=True)
    assert len(records) == LAYERS
    logits = np.asarray(logits, np.float64)
    logp = logits - logits.max(-1, keepdims=True)
    logp -= np.log(np.exp(logp).sum(-1, keepdims=True))
    ce = -np.mean(logp[np.arange(BATCH), batch["label"]])
    rates = [float(np.asarray(r.spikes, np.float64).mean()) for r in records.values()]
    penalty = WEIGHT * np.mean([(r - TARGET) ** 2 for r in rates])
    assert penalty > 1e-4  # the term is not negligible here
    np.testing.assert_allclose(float(metrics["loss"]), ce, rtol=1e-5)
    np.testing.assert_allclose(float(metrics["firing_rate_penalty"]), penalty, rtol=1e-5)
    np.testing.assert_allclose(float(metrics["firing_rate"]), np.mean(rates), rtol=1e-5)


@pytest.mark.parametrize("kw", [{"neuron_impl": "fused"}, {"remat": True}])
def test_regularised_gradient_equals_that_of_an_independent_loss(kw):
    state = _state(_model(**kw))  # plain SGD: new params = params - LR * grad
    batch = batches()[0]
    new, _ = jax.jit(
        functools.partial(mj.train.train_step, firing_rate_reg=WEIGHT, firing_rate_target=TARGET)
    )(state, batch)
    grad = jax.jit(
        lambda params, weight: jax.grad(
            _independent_loss(
                _model(neuron_impl="scan"),
                state.batch_stats,
                batch["image"],
                batch["label"],
                weight,
                TARGET,
            )  # fmt: skip
        )(params)
    )
    grads = grad(state.params, WEIGHT)
    want = jax.tree.map(lambda p, g: p - LR * g, state.params, grads)
    jax.tree.map(
        lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6), new.params, want
    )
    # the term does change the gradient (the comparison above is not with the plain one)
    change = jax.tree.map(lambda a, b: float(jnp.abs(a - b).max()), grads, grad(state.params, 0.0))
    assert max(jax.tree.leaves(change)) > 1e-3


@pytest.mark.skipif(jax.device_count() < 2, reason="needs 2 devices")
def test_two_devices_equal_one_device_with_the_global_batch():
    step = functools.partial(mj.train.train_step, firing_rate_reg=WEIGHT, firing_rate_target=TARGET)
    ref = initial_state(parallel_model(None))
    ref_losses = []
    for batch in batches():
        ref, m = jax.jit(step)(ref, batch)
        ref_losses.append([float(m[k]) for k in ("loss", "firing_rate_penalty")])
    dp = DataParallel("shard_map", devices=jax.devices()[:2], train_step_fn=step)
    state = dp.put_state(initial_state(parallel_model(AXIS)))
    losses = []
    for batch in batches():
        state, m = dp.train_step(state, batch)
        losses.append([float(m[k]) for k in ("loss", "firing_rate_penalty")])
    np.testing.assert_allclose(losses, ref_losses, rtol=1e-5)
    jax.tree.map(
        lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5),
        jax.device_get(dp.get_state(state).params),
        jax.device_get(ref.params),
    )


@pytest.mark.parametrize(
    "kw, message",
    [
        ({"firing_rate_reg": -0.1}, "firing_rate_reg must be a finite number >= 0, got -0.1"),
        ({"firing_rate_reg": float("nan")}, "firing_rate_reg must be a finite number"),
        ({"firing_rate_reg": True}, "firing_rate_reg must be a finite number"),
        ({"firing_rate_reg": 0.1, "firing_rate_target": -1.0}, "firing_rate_target must be"),
    ],
)
def test_bad_weights_are_named(kw, message, small_state):
    with pytest.raises(ValueError, match=message):
        mj.train.train_step(small_state, batches()[0], **kw)


class _Relu(nn.Module):
    @nn.compact
    def __call__(self, x):
        return nn.relu(x)


def test_a_model_without_mlf_layers_cannot_be_regularised():
    state = _state(_model(neuron=_Relu))
    with pytest.raises(ValueError, match="no neuron layer"):
        jax.jit(functools.partial(mj.train.train_step, firing_rate_reg=0.1))(state, batches()[0])


# -- the activity step ------------------------------------------------------------------------


@pytest.mark.skipif(jax.device_count() < 2, reason="needs 2 devices")
@pytest.mark.parametrize("mode", ["shard_map", "pmap"])
def test_activity_step_equals_the_analysis_of_the_global_batch(mode):
    thresholds, surrogate = (0.6, 1.6, 2.6), mj.rectangular(1.0)
    state = initial_state(parallel_model(AXIS))
    batch = batches()[0]
    dp = DataParallel(mode, devices=jax.devices()[:2])
    fn = functools.partial(mj.train.activity_step, thresholds=thresholds, surrogate=surrogate)
    got = jax.device_get(dp.map_step(fn)(dp.put_state(state), batch))

    _, records = mj.analysis.record(
        parallel_model(None), _variables(state), batch["image"], train=True
    )
    assert len(records) == LAYERS and set(got["firing_rate"]) == set(records)
    for name, rec in records.items():
        spikes = np.asarray(rec.spikes, np.float64)
        u = np.asarray(rec.membrane, np.float64)  # [T, K, B, ...]
        th = np.asarray(thresholds).reshape(1, 3, *([1] * (u.ndim - 2)))
        dormant = np.all(np.abs(u - th) >= 0.5, axis=1)  # outside every window |z| < 1/2
        np.testing.assert_allclose(got["firing_rate"][name], spikes.mean(), rtol=1e-6)
        np.testing.assert_allclose(got["dormant"][name], dormant.mean(), rtol=1e-6)


def test_activity_step_without_thresholds_gives_rates_only(small_state):
    out = jax.jit(functools.partial(mj.train.activity_step, thresholds=None, surrogate=None))(
        small_state, batches()[0]
    )
    assert set(out) == {"firing_rate"} and len(out["firing_rate"]) == LAYERS


def test_a_resnet_of_zoo_neurons_has_its_rates_seen_and_regularised():
    model = _model(neuron=functools.partial(mj.nn.Neuron, model=mj.zoo.PLIF()))
    state = _state(model)
    x = np.random.default_rng(0).normal(1.0, 1.0, (BATCH, 8, 8, 1)).astype(np.float32)
    apply = mj.train.with_firing_rates(state.apply_fn)
    _, updates = apply(_variables(state), x, train=True, mutable=["batch_stats"])
    rates = np.asarray(layer_firing_rates(updates))
    # independently: the mean of every neuron layer's recorded spikes
    _, records = mj.analysis.record(model, _variables(state), x, train=True)
    want = [float(jnp.mean(r.spikes)) for r in records.values()]
    assert len(want) == 9  # stem, 3 blocks of 2, 2 shortcuts
    np.testing.assert_allclose(sorted(rates), sorted(want), rtol=1e-6)
    assert max(want) > 0
    step = jax.jit(functools.partial(mj.train.train_step, firing_rate_reg=0.1))
    _, metrics = step(state, {"image": x, "label": np.zeros(BATCH, np.int32)})
    assert np.isfinite(float(metrics["loss"]))
