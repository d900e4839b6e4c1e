"""The ResNet's input encoders and learned neuron constants; the train step's encoder rng."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import mlf_jax as mj

# bn_momentum 0: one training pass sets the tdBN statistics to its batch's, so that the
# net is active in eval mode (with the initial statistics this small net is silent)
KW = dict(widths=(8, 8, 8), num_classes=3, time_steps=3, in_channels=1, bn_momentum=0.0)
NEURON_LAYERS = 9  # stem, two per block (3 blocks), shortcut neurons of stages 2 and 3


@pytest.fixture(scope="module")
def setup():
    x = jax.random.uniform(jax.random.key(0), (4, 8, 8, 1))
    model = mj.models.resnet(8, **KW)
    v = _init(model, x)
    _, stats = jax.jit(lambda v, x: model.apply(v, x, train=True, mutable=["batch_stats"]))(v, x)
    return x, model, {**v, **stats}


def _init(model, x):
    return jax.jit(lambda k, x: model.init(k, x, train=False))(jax.random.key(1), x)


def _apply(model, v, x, **kw):
    logits = jax.jit(lambda v, x: model.apply(v, x, train=False, **kw))(v, x)
    assert np.any(np.asarray(logits) != 0), "a silent net would make every comparison trivial"
    return logits


def test_direct_encoding_is_the_default_and_the_repetition(setup):
    x, model, v = setup
    explicit = mj.models.resnet(8, encoder="direct", **KW)
    assert model.encoder == "direct"
    np.testing.assert_array_equal(_apply(explicit, v, x), _apply(model, v, x))
    np.testing.assert_array_equal(_apply(model, v, mj.encoders.direct(x, 3)), _apply(model, v, x))


def test_rate_and_latency_encode_the_static_image(setup):
    x, model, v = setup
    spikes = mj.encoders.latency(x, 3)
    np.testing.assert_array_equal(
        _apply(mj.models.resnet(8, encoder="latency", **KW), v, x), _apply(model, v, spikes)
    )
    rate = mj.models.resnet(8, encoder="rate", **KW)
    # eval without an 'encoder' rng: the fixed key 0, so evaluation is deterministic
    np.testing.assert_array_equal(
        _apply(rate, v, x), _apply(model, v, mj.encoders.rate(jax.random.key(0), x, 3))
    )
    with_rng = [_apply(rate, v, x, rngs={"encoder": jax.random.key(k)}) for k in (1, 1, 2)]
    np.testing.assert_array_equal(with_rng[0], with_rng[1])
    assert not np.array_equal(with_rng[0], with_rng[2])


def test_rate_encoding_needs_an_rng_when_training(setup):
    x, _, v = setup
    rate = mj.models.resnet(8, encoder="rate", **KW)
    with pytest.raises(ValueError, match="rngs=\\{'encoder': key\\}"):
        rate.apply(v, x, train=True, mutable=["batch_stats"])


def test_spike_encoders_refuse_sequences_and_unknown_names(setup):
    x, _, v = setup
    with pytest.raises(ValueError, match="encodes static images"):
        mj.models.resnet(8, encoder="latency", **KW).apply(v, jnp.stack([x] * 3), train=False)
    with pytest.raises(ValueError, match="unknown encoder 'poisson'"):
        mj.models.resnet(8, encoder="poisson", **KW).apply(v, x, train=False)


def test_learned_constants_add_one_leak_and_k_thresholds_per_neuron_layer(setup):
    x, model, v = setup
    learned = mj.models.resnet(8, learn_tau=True, learn_thresholds=True, **KW)
    lv = {**_init(learned, x), "batch_stats": v["batch_stats"]}
    flat = {
        "/".join(str(getattr(e, "key", e)) for e in path): p
        for path, p in jax.tree_util.tree_flatten_with_path(lv["params"])[0]
    }
    leaks = [k for k in flat if k.endswith("tau_logit")]
    thresholds = [k for k in flat if k.endswith("thresholds_raw")]
    assert len(leaks) == len(thresholds) == NEURON_LAYERS
    assert all(flat[k].shape == (3,) for k in thresholds)
    count = lambda params: sum(p.size for p in jax.tree.leaves(params))  # noqa: E731
    assert count(lv["params"]) == count(v["params"]) + NEURON_LAYERS * (1 + 3)
    # at initialisation the same network (the other parameters are the same draws)
    np.testing.assert_allclose(_apply(learned, lv, x), _apply(model, v, x), rtol=1e-5)


def test_the_train_step_gives_the_encoder_a_new_key_every_step_and_device():
    keys = [mj.train.step.encoder_key(None, jnp.int32(s)) for s in (0, 1)]
    assert not np.array_equal(jax.random.key_data(keys[0]), jax.random.key_data(keys[1]))
    seeded = mj.train.step.encoder_key(jax.random.key(7), jnp.int32(0))
    assert not np.array_equal(jax.random.key_data(seeded), jax.random.key_data(keys[0]))
    per_device = jax.vmap(
        lambda _: jax.random.key_data(mj.train.step.encoder_key(None, jnp.int32(0), "d")),
        axis_name="d",
    )(jnp.arange(2))
    assert not np.array_equal(per_device[0], per_device[1])


def test_a_rate_encoded_model_trains_with_the_library_step(setup):
    x, _, _ = setup
    # learned constants too: the new parameters get gradients in the library's step
    kw = {**KW, "time_steps": 1, "widths": (4, 4, 4)}  # T = 1: the quickest to compile
    rate = mj.models.resnet(8, encoder="rate", learn_tau=True, learn_thresholds=True, **kw)
    state = mj.train.create_train_state(rate, mj.train.sgd(0.1), jax.random.key(1), x)
    batch = {"image": x, "label": jnp.asarray([0, 1, 2, 0])}
    new, metrics = jax.jit(mj.train.train_step)(state, batch)
    assert np.isfinite(float(metrics["loss"])) and int(new.step) == 1
    for name in ("tau_logit", "thresholds_raw"):
        before = state.params["stem_neuron"][name]
        assert not np.array_equal(new.params["stem_neuron"][name], before), name
