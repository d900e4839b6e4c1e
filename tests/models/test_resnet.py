"""Spiking ResNets: parameter counts, shapes, recording, initialisation, bad input."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import linen as nn

import mlf_jax as mj

from ..conftest import needs_train


def _count(model, x):
    v = jax.eval_shape(lambda: model.init(jax.random.key(0), x, train=False))
    return mj.models.num_params(v)


@pytest.mark.parametrize(
    "preset, shape, expected",
    [
        (mj.models.cifar10_resnet20, (2, 32, 32, 3), 4_327_754),
        (mj.models.gesture_resnet20, (40, 2, 32, 32, 2), 272_395),
        (mj.models.cifar10dvs_resnet14, (10, 2, 42, 42, 2), 696_330),
    ],
)
def test_preset_parameter_counts(preset, shape, expected):
    assert _count(preset(), jnp.zeros(shape)) == expected


def test_parameter_count_by_hand_for_a_small_net():
    # depth 8, widths 4/8/16, 1 input channel, 3 classes; ds adds no parameters
    stem = 1 * 4 * 9 + 2 * 4
    s1 = 2 * (4 * 4 * 9) + 2 * 2 * 4
    s2 = (4 * 8 * 9 + 8 * 8 * 9 + 2 * 2 * 8) + (4 * 8 + 2 * 8)
    s3 = (8 * 16 * 9 + 16 * 16 * 9 + 2 * 2 * 16) + (8 * 16 + 2 * 16)
    head = 16 * 3 + 3
    for shortcut in ("ds", "standard"):
        m = mj.models.resnet(8, widths=(4, 8, 16), num_classes=3, shortcut=shortcut)
        assert _count(m, jnp.zeros((2, 12, 12, 1))) == stem + s1 + s2 + s3 + head


@pytest.fixture(scope="module")
def small():
    model = mj.models.resnet(8, widths=(4, 8, 8), num_classes=5, time_steps=3, in_channels=2)
    x = jax.random.normal(jax.random.key(0), (2, 8, 8, 2))
    variables = jax.jit(model.init)(jax.random.key(1), x)
    return model, x, variables


def test_static_input_is_repeated_over_time(small):
    model, x, v = small
    logits = model.apply(v, x, train=False)
    assert logits.shape == (2, 5)
    repeated = jnp.broadcast_to(x, (3, *x.shape))
    np.testing.assert_allclose(model.apply(v, repeated, train=False), logits, rtol=1e-6)


def test_logits_are_the_time_average_of_per_step_logits(small):
    model, x, v = small
    # per-step logits: the head applied to the pooled last activations of each step
    _, state = model.apply(v, x, train=False, capture_intermediates=True, mutable=["intermediates"])
    per_step = state["intermediates"]["head"]["__call__"][0]
    assert per_step.shape == (3, 2, 5)
    np.testing.assert_allclose(per_step.mean(0), model.apply(v, x, train=False), rtol=1e-6)


def test_train_mode_updates_batch_stats_and_eval_does_not_need_mutable(small):
    model, x, v = small
    _, upd = model.apply(v, x, train=True, mutable=["batch_stats"])
    changed = jax.tree.map(lambda a, b: bool(jnp.any(a != b)), upd["batch_stats"], v["batch_stats"])
    assert all(jax.tree.leaves(changed))
    model.apply(v, x, train=False)  # no mutable collections needed
    # the default is evaluation: a plain apply neither needs nor changes the statistics
    np.testing.assert_array_equal(model.apply(v, x), model.apply(v, x, train=False))


def test_recording_sows_potentials_and_spikes_of_every_neuron(small):
    model, x, v = small
    _, state = model.apply(v, x, train=False, mutable=[mj.nn.RECORD_COLLECTION])
    rec = state[mj.nn.RECORD_COLLECTION]
    paths = [
        "/".join(str(k.key) for k in p[:-1]) for p, _ in jax.tree_util.tree_leaves_with_path(rec)
    ]
    membranes = sorted({p for p in paths if p.endswith("membrane")})
    # stem + 3 blocks x 2 neurons + 2 projection-shortcut neurons (ds)
    assert len(membranes) == 1 + 3 * 2 + 2
    u = rec["stem_neuron"]["membrane"][0]
    assert u.shape == (3, 3, 2, 8, 8, 4)  # [T, K, B, H, W, C]


def test_spikes_between_ds_blocks_are_nonnegative_integers(small):
    model, x, v = small
    _, state = model.apply(v, x, train=False, capture_intermediates=True, mutable=["intermediates"])
    out = state["intermediates"]["stage1_block1"]["__call__"][0]
    assert jnp.all(out >= 0) and jnp.all(out == jnp.round(out))
    assert float(out.max()) > 0


def test_kaiming_normal_initialisation():
    m = mj.models.resnet(8, widths=(64, 64, 64), num_classes=10)
    v = jax.jit(m.init)(jax.random.key(0), jnp.zeros((1, 8, 8, 3)))
    k = np.asarray(v["params"]["stage1_block1"]["conv1"]["kernel"])  # fan_in = 9 * 64
    assert abs(k.std() - np.sqrt(2 / (9 * 64))) < 0.03 * np.sqrt(2 / (9 * 64))
    assert np.abs(k).max() > 2.5 * np.sqrt(2 / (9 * 64))  # untruncated normal
    np.testing.assert_array_equal(v["params"]["stem_bn"]["scale"], 1.0)


def test_gesture_preset_normalises_its_input_without_affine_parameters():
    m = mj.models.gesture_resnet20(widths=(4, 4, 4), time_steps=2)
    v = jax.eval_shape(m.init, jax.random.key(0), jnp.zeros((2, 1, 8, 8, 2)))  # names only
    assert "input_bn" in v["batch_stats"] and "input_bn" not in v["params"]


def test_depth_must_be_6n_plus_2():
    assert mj.models.stage_sizes_for_depth(68) == (11, 11, 11)
    with pytest.raises(ValueError, match=r"6n \+ 2"):
        mj.models.resnet(10)


# --- bad input -------------------------------------------------------------


def test_wrong_rank_is_a_value_error(small):
    model, _, v = small
    with pytest.raises(ValueError, match=r"rank 4 \[B, H, W, C\].*got rank 3"):
        model.apply(v, jnp.zeros((8, 8, 2)), train=False)


def test_wrong_channel_count_is_a_value_error(small):
    model, _, v = small
    with pytest.raises(ValueError, match="expected 2 input channels.*got 3"):
        model.apply(v, jnp.zeros((2, 8, 8, 3)), train=False)


def test_wrong_number_of_time_steps_is_a_value_error(small):
    model, _, v = small
    with pytest.raises(ValueError, match="T=4 steps but the model expects time_steps=3"):
        model.apply(v, jnp.zeros((4, 2, 8, 8, 2)), train=False)


def test_bad_thresholds_in_a_model_are_a_value_error_when_it_is_built():
    with pytest.raises(ValueError, match="strictly increasing"):
        mj.models.resnet(8, widths=(4, 4, 4), thresholds=(1.6, 0.6))


def test_unknown_surrogate_in_a_model_is_a_value_error_when_it_is_built():
    with pytest.raises(ValueError, match="unknown surrogate 'gaussian'"):
        mj.models.resnet(8, widths=(4, 4, 4), surrogate="gaussian")


def test_mismatched_stages_and_widths_are_a_value_error():
    with pytest.raises(ValueError, match="same non-zero length"):
        mj.models.ResNet(stage_sizes=(1, 1), widths=(4, 8, 16)).init(
            jax.random.key(0), jnp.zeros((1, 8, 8, 1))
        )


def test_bfloat16_convolutions_keep_float32_parameters_and_neuron_state():
    m = mj.models.resnet(
        8, widths=(4, 4, 4), num_classes=3, time_steps=2, in_channels=1, dtype=jnp.bfloat16
    )
    x = jax.random.normal(jax.random.key(0), (2, 8, 8, 1))
    v = jax.jit(lambda k, x: m.init(k, x, train=False))(jax.random.key(1), x)
    assert {p.dtype for p in jax.tree.leaves(v["params"])} == {jnp.dtype(jnp.float32)}
    logits, state = jax.jit(
        lambda v, x: m.apply(
            v, x, train=False, capture_intermediates=True, mutable=["intermediates"]
        )
    )(v, x)
    inter = state["intermediates"]
    assert inter["stem_conv"]["__call__"][0].dtype == jnp.bfloat16  # compute in bf16
    assert inter["stem_neuron"]["membrane"][0].dtype == jnp.float32  # neuron state in f32
    assert logits.dtype == jnp.float32


@needs_train
def test_remat_gives_the_same_gradients_with_the_same_parameter_names():
    x = jax.random.normal(jax.random.key(0), (2, 8, 8, 1))
    y = jnp.asarray([0, 2])
    kw = dict(widths=(4, 4, 8), num_classes=3, time_steps=2, in_channels=1)
    plain, remat = mj.models.resnet(8, **kw), mj.models.resnet(8, remat=True, **kw)
    v_key = jax.random.key(1)
    v = jax.jit(plain.init)(v_key, x)
    # the same variable names and shapes (remat must not rename the layers)
    shapes = lambda tree: jax.tree.map(lambda a: a.shape, tree)  # noqa: E731
    assert shapes(v) == shapes(jax.eval_shape(remat.init, v_key, x))

    def grads(model):
        def loss(p):
            logits, _ = model.apply({**v, "params": p}, x, train=True, mutable=["batch_stats"])
            return mj.train.cross_entropy(logits, y)

        return jax.jit(jax.grad(loss))(v["params"])

    jax.tree.map(
        lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6),
        grads(remat),
        grads(plain),
    )


# --- custom neuron factory -------------------------------------------------


class _ReluNeuron(nn.Module):
    """Not a spiking neuron at all: marks where the ResNet puts its neuron layers."""

    @nn.compact
    def __call__(self, x):
        self.sow("probe", "calls", jnp.zeros(()))
        return jax.nn.relu(x)


def test_a_custom_neuron_factory_replaces_every_mlf_layer():
    kw = dict(widths=(4, 8, 8), num_classes=3, time_steps=2, in_channels=1)
    x = jax.random.normal(jax.random.key(0), (2, 8, 8, 1))
    model = mj.models.resnet(8, neuron=_ReluNeuron, **kw)
    v = model.init(jax.random.key(1), x)
    _, state = model.apply(
        v, x, train=False, mutable=["probe", mj.nn.RECORD_COLLECTION, "intermediates"]
    )
    called = {
        "/".join(str(k.key) for k in p[:-2])
        for p, _ in jax.tree_util.tree_leaves_with_path(state["probe"])
    }
    blocks = ["stage1_block1", "stage2_block1", "stage3_block1"]
    expected = {"stem_neuron"} | {f"{b}/neuron{i}" for b in blocks for i in (1, 2)}
    expected |= {"stage2_block1/shortcut_neuron", "stage3_block1/shortcut_neuron"}
    assert called == expected
    assert not state.get(mj.nn.RECORD_COLLECTION)  # no MLF layer left to sow potentials


def test_a_neuron_factory_equal_to_the_default_gives_the_same_logits():
    kw = dict(widths=(4, 8, 8), num_classes=3, time_steps=2, in_channels=1)
    x = jax.random.normal(jax.random.key(0), (2, 8, 8, 1))
    default = mj.models.resnet(8, thresholds=(0.3, 1.3), tau=0.5, **kw)
    factory = functools.partial(mj.nn.MLF, thresholds=(0.3, 1.3), tau=0.5)
    # tdBN's v_th defaults to thresholds[0] of the ResNet, not of the factory
    custom = mj.models.resnet(8, neuron=factory, v_th=0.3, **kw)
    v = default.init(jax.random.key(1), x)
    np.testing.assert_array_equal(custom.apply(v, x, train=False), default.apply(v, x, train=False))


# --- The ResNet's input encoders and learned neuron constants; the train step's encoder rng


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


@needs_train
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


@needs_train
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


def test_num_params_counts_params_only_from_variables_or_a_bare_tree():
    variables = {
        "params": {"w": jnp.zeros((3, 4)), "b": jnp.zeros(4)},
        "batch_stats": {"m": jnp.zeros(9)},
    }
    assert mj.models.num_params(variables) == 16  # 3 * 4 + 4; statistics not counted
    assert mj.models.num_params(variables["params"]) == 16


@pytest.mark.parametrize(
    "neuron, message",
    [
        (mj.zoo.MLF, r"is a neuron model class: pass an instance, neuron=mj.zoo.MLF\(\)"),
        (mj.nn.MLF(), "is a built layer, not a factory"),
        ("plif", r"neuron='plif' \(str\) is not a neuron model"),
    ],
)
def test_a_wrong_neuron_is_refused_when_the_model_is_built(neuron, message):
    with pytest.raises(TypeError, match=message):
        mj.models.resnet(8, neuron=neuron)


def test_mlf_settings_with_another_neuron_are_refused_not_ignored():
    with pytest.raises(ValueError, match="thresholds, tau: settings of the MLF neuron, which "):
        mj.models.resnet(8, neuron=mj.zoo.PLIF(), thresholds=(0.5, 1.5), tau=0.9)
    # with an MLF neuron they set it, as configs and sidecars give them
    model = mj.models.resnet(8, neuron=mj.zoo.MLF(tau=0.5), thresholds=(0.5, 1.5))
    assert model.neuron == mj.zoo.MLF(thresholds=(0.5, 1.5), tau=0.5)
    assert mj.models.resnet(8, neuron_impl="scan").neuron == mj.zoo.MLF(impl="scan")
