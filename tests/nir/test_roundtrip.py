"""Export, nir.write, nir.read, import: the same spikes per layer and the same logits as the
original, for a small DS-ResNet, a spiking ResNet and the shipped main model."""

from pathlib import Path

import jax
import numpy as np
import pytest

pytest.importorskip("nir")

import nir  # noqa: E402

import mlf_jax as mj  # noqa: E402
from mlf_jax.nir import NIRExportError, from_nir, to_nir  # noqa: E402
from tests.nir._models import imported_run, linen_run, small  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
MAIN = ROOT / "experiments" / "weights" / "fashion_mnist_main"


def _round_trip(net, variables, shape, tmp_path, **kwargs):
    path = tmp_path / "model.nir"
    nir.write(path, to_nir(net, variables, input_shape=shape, **kwargs))
    return from_nir(nir.read(path))


def _assert_same(net, variables, x, model, imported):
    logits, spikes = linen_run(net, variables, x)
    out, got = imported_run(model, imported, x)
    np.testing.assert_allclose(np.asarray(out), logits, atol=1e-5)
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
    ],
    ids=["ds-mlf-learned", "spiking-resnet-lif", "spiking-resnet-mlf", "ds-if"],
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
    _assert_same(net, variables, mj.models.preprocess(images, info), model, imported)


def test_the_shipped_models_channels_are_checked_against_input_shape():
    net, variables, _ = mj.models.load(MAIN)  # in_channels=1: NIR's (C, H, W) given instead
    with pytest.raises(NIRExportError, match=r"^input_shape \(1, 28, 28\): expected 1 input ch"):
        to_nir(net, variables, input_shape=(1, 28, 28))


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
