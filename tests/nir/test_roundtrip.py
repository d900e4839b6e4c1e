"""Export, nir.write, nir.read, import: the same spikes per layer and the same logits as the
original, for a small DS-ResNet, a spiking ResNet and the shipped main model."""

from pathlib import Path

import jax
import numpy as np
import pytest

pytest.importorskip("nir")

import nir  # noqa: E402

import mlf_jax as mj  # noqa: E402
from mlf_jax.nir import from_nir, to_nir  # noqa: E402
from tests.nir._models import imported_run, linen_run, small  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
MAIN = ROOT / "experiments" / "weights" / "fashion_mnist_main"


def _round_trip(net, variables, shape, tmp_path, **kwargs):
    path = tmp_path / "model.nir"
    nir.write(path, to_nir(net, variables, input_shape=shape, **kwargs))
    return from_nir(nir.read(path))


def _assert_same(net, variables, x, model, imported, atol=1e-5):
    logits, spikes = linen_run(net, variables, x)
    out, got = imported_run(model, imported, x)
    np.testing.assert_allclose(np.asarray(out), logits, rtol=0, atol=atol)
    assert sorted(got) == sorted(spikes)
    for layer, s in spikes.items():
        np.testing.assert_array_equal(np.asarray(got[layer]), s, err_msg=layer)
        assert s.mean() > 0, layer
    return logits


@pytest.mark.parametrize(
    "shortcut, kwargs",
    [
        ("ds", dict(learn_thresholds=True, learn_tau=True, tau=0.5)),
        ("standard", dict(neuron=mj.zoo.LIF(tau=0.3, threshold=0.5), input_norm=True)),
        ("standard", dict(time_steps=2)),
        ("ds", dict(neuron=mj.zoo.IF(threshold=0.7), time_steps=2)),
        ("ds", dict(neuron=mj.zoo.PLIF(tau=0.4, threshold=0.5))),  # its learned leak moved
    ],
    ids=["ds-mlf-learned", "spiking-resnet-lif", "spiking-resnet-mlf", "ds-if", "ds-plif"],
)
def test_round_trip_of_a_small_resnet(shortcut, kwargs, tmp_path):
    net, variables, x = small(shortcut, **kwargs)
    model, imported = _round_trip(net, variables, (8, 8, 2), tmp_path)
    kinds = {s.kind for s in model.spec.steps}
    assert ("mlf" in kinds) == (type(net.neuron_model()) is mj.zoo.MLF)
    _assert_same(net, variables, x, model, imported)


def test_round_trip_of_the_shipped_main_model(tmp_path):
    net, variables, info = mj.models.load(MAIN)
    model, imported = _round_trip(net, variables, info["input"]["shape"], tmp_path)
    images = np.asarray(jax.random.randint(jax.random.key(0), (6, 28, 28, 1), 0, 256), np.uint8)
    images = np.concatenate([images, np.zeros((4, 28, 28, 1), np.uint8) + 60])  # the guide's
    x = mj.models.preprocess(images, info)
    _assert_same(net, variables, x, model, imported, atol=1e-6)  # the guide: under 1e-6


def test_the_shipped_main_models_graph_as_the_guide_counts_it():
    # ResNet-8 (one DS block per stage), MLF with K = 3, identity shortcut in stage 1 and
    # projections (with their own neuron) in stages 2 and 3. Nodes: input, stem conv and its
    # 3 levels (5); stage 1: 2 convolutions, 2 x 3 levels (8); stages 2, 3: 3 convolutions,
    # 3 x 3 levels (12 each); pool, flatten, head, output (4): 41. Edges: input -> stem (1),
    # stem -> 3 levels (3); stage 1: 3 levels in -> conv1, 3 out of it, 3 into conv2, 3 out
    # of it (12); its output is 6 nodes (its neuron2 and the stem's levels), so stage 2:
    # 6 -> conv1, 3, 3, 3, 6 -> shortcut conv, 3 (24), likewise stage 3 (24); 6 -> pool,
    # then 3 single edges: 1 + 3 + 12 + 24 + 24 + 6 + 3 = 73
    net, variables, info = mj.models.load(MAIN)
    graph = to_nir(net, variables, input_shape=info["input"]["shape"])
    assert (len(graph.nodes), len(graph.edges)) == (41, 73)
    assert graph.metadata["time_steps"] == 1 and graph.metadata["dt"] == 1e-4
    meta = graph.nodes["stage1_block1.neuron1.0"].metadata
    assert meta == {"layer": "stage1_block1/neuron1", "level": 0, "levels": 3}


def test_an_imported_graph_takes_nir_layout_without_metadata(tmp_path):
    net, variables, x = small("ds", time_steps=2)
    graph = to_nir(net, variables, input_shape=(8, 8, 2))
    graph.metadata = {}  # a graph from elsewhere: no readout, layout or T recorded
    model, imported = from_nir(graph, dt=1e-4)
    assert model.spec.readout == "per_step" and not model.spec.channels_last
    steps = np.repeat(np.moveaxis(np.asarray(x), -1, 1)[None], 2, axis=0)
    out = imported_run(model, imported, steps, return_spikes=False)
    np.testing.assert_allclose(
        np.asarray(out).mean(axis=0), linen_run(net, variables, x)[0], atol=1e-5
    )


def test_the_average_over_time_as_an_integrator_node(tmp_path):
    net, variables, x = small("ds", time_steps=3)
    model, imported = _round_trip(net, variables, (8, 8, 2), tmp_path, readout="integrator")
    assert model.spec.readout == "last_step" and model.spec.steps[-2].kind == "integrator"
    _assert_same(net, variables, x, model, imported)
