"""record/collect: layer order (call order, not dict order), keys, shapes, consistency."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import linen as nn

import mlf_jax as mj
from mlf_jax.analysis import LayerRecord, collect, record

from ..ds_resnet8_layers import DS_RESNET8_NEURONS

TINY_LAYERS = DS_RESNET8_NEURONS
# spatial size and width of each layer's output for an 8x8 input, widths (2, 4, 4)
TINY_SHAPES = [(8, 2), (8, 2), (8, 2), (4, 4), (4, 4), (4, 4), (2, 4), (2, 4), (2, 4)]


@pytest.fixture(scope="module")
def recorded(tiny):
    model, variables, x = tiny
    return record(model, variables, x)


def test_record_lists_every_neuron_layer_in_call_order_with_shapes(tiny, recorded):
    model, variables, x = tiny
    logits, recs = recorded
    assert list(recs) == TINY_LAYERS
    apply = jax.jit(model.apply, static_argnames="train")
    np.testing.assert_allclose(logits, apply(variables, x, train=False), rtol=1e-6)
    for (hw, c), rec in zip(TINY_SHAPES, recs.values(), strict=True):
        assert isinstance(rec, LayerRecord)
        assert rec.membrane.shape == (2, 3, 2, hw, hw, c)  # [T, K, B, H, W, C]
        assert rec.spikes.shape == (2, 2, hw, hw, c)


def test_recorded_spikes_are_the_threshold_crossings_of_the_recorded_potentials(recorded):
    _, recs = recorded
    th = np.array([0.6, 1.6, 2.6]).reshape(1, 3, 1, 1, 1, 1)
    for rec in recs.values():
        crossings = (np.asarray(rec.membrane) > th).sum(axis=1)
        np.testing.assert_array_equal(rec.spikes, crossings)


def test_record_in_train_mode_and_with_remat(tiny):
    model, variables, x = tiny
    _, recs = record(model.clone(remat=True), variables, x, train=True)
    assert list(recs) == TINY_LAYERS


def test_record_ignores_stale_intermediates_in_variables(tiny, recorded):
    model, variables, x = tiny
    _, recs = recorded
    _, again = record(model, {**variables, "intermediates": {"junk": 1}}, x)
    assert list(again) == TINY_LAYERS
    np.testing.assert_array_equal(again["stem_neuron"].spikes, recs["stem_neuron"].spikes)


def test_collect_restores_forward_order_after_keys_were_sorted(tiny):
    model, variables, x = tiny
    apply = jax.jit(model.apply, static_argnames=("train", "mutable"))
    _, mut = apply(variables, x, train=False, mutable=("intermediates",))
    resorted = jax.tree.map(lambda a: a, mut["intermediates"])  # jit and tree.map sort keys
    assert list(resorted["stage2_block1"]) == ["neuron1", "neuron2", "shortcut_neuron"]
    assert list(collect(resorted)) == TINY_LAYERS
    assert list(collect(mut)) == TINY_LAYERS  # the whole `mutated` dict works too


def _rec(value, levels=1):
    u = jnp.full((2, levels, 1), float(value))
    return {"membrane": (u,), "spikes": (jnp.zeros((2, 1)),)}


def test_collect_on_hand_built_intermediates():
    inter = {"b": _rec(1), "a": {"z": _rec(2), "y": _rec(3)}, "other": {"__call__": (0,)}}
    recs = collect(inter)
    # unknown names keep the dict's order
    assert list(recs) == ["b", "a/z", "a/y"]
    assert float(recs["a/y"].membrane[0, 0, 0]) == 3.0
    # an explicit order wins; unlisted layers come last
    assert list(collect(inter, order=["a/y", "b"])) == ["a/y", "b", "a/z"]
    # one layer's own collection: key ''
    assert list(collect(_rec(1))) == [""]


def test_collect_names_repeated_calls_by_index():
    u = jnp.zeros((2, 1, 1))
    s = jnp.zeros((2, 1))
    recs = collect({"n": {"membrane": (u, u + 1), "spikes": (s, s)}})
    assert list(recs) == ["n[0]", "n[1]"]
    assert float(recs["n[1]"].membrane[0, 0, 0]) == 1.0


def test_collect_rejects_bad_input():
    with pytest.raises(ValueError, match="mapping"):
        collect([1, 2])
    bad = {"n": {"membrane": (jnp.zeros((2, 3, 4)),), "spikes": (jnp.zeros((2, 5)),)}}
    with pytest.raises(ValueError, match=r"layer 'n'.*\[T, K, B, \.\.\.\]"):
        collect(bad)
    uneven = {"n": {"membrane": (jnp.zeros((2, 1, 1)),) * 2, "spikes": (jnp.zeros((2, 1)),)}}
    with pytest.raises(ValueError, match="2 membrane values but 1 spike"):
        collect(uneven)


def test_record_of_a_single_mlf_layer():
    x = jnp.full((3, 1, 2), 2.0)
    out, recs = record(_Wrapped(), {}, x)
    assert list(recs) == ["neuron"]
    np.testing.assert_array_equal(recs["neuron"].spikes[:, 0, 0], [2, 2, 3])  # by hand
    np.testing.assert_allclose(recs["neuron"].membrane[:, 2, 0, 0], [2.0, 2.5, 2.625])


class _Wrapped(nn.Module):
    @nn.compact
    def __call__(self, x, train=False):
        return mj.nn.MLF(name="neuron")(x)


class _Reversed(nn.Module):
    """Two layers whose call order is the reverse of their names' order."""

    @nn.compact
    def __call__(self, x, train=False):
        x = mj.nn.MLF(name="zeta")(x)
        return mj.nn.MLF(name="alpha")(x + 1.0)


def test_record_uses_call_order_not_names():
    _, recs = record(_Reversed(), {}, jnp.full((3, 1, 2), 2.0))
    assert list(recs) == ["zeta", "alpha"]  # jit returns the collection sorted by name
    np.testing.assert_array_equal(recs["zeta"].spikes[:, 0, 0], [2, 2, 3])
    # alpha gets 3, 3, 4: every level is above threshold at every step
    np.testing.assert_array_equal(recs["alpha"].spikes[:, 0, 0], [3, 3, 3])
