"""An MLF neuron with K levels exported as K NIR LIF nodes (one per threshold, each with
its own hard reset, spikes summed by the edges into the next node) is the library's MLF
neuron exactly, at every step: run by the independent NumPy reference of NIR against
mj.mlf over long sequences."""

import jax
import numpy as np
import pytest

pytest.importorskip("nir")

import nir  # noqa: E402

import mlf_jax as mj  # noqa: E402
from mlf_jax.nir import neuron_nodes  # noqa: E402
from tests.nir import reference  # noqa: E402


def _k_lif_graph(model, shape, dt):
    """Input -> K neuron nodes -> Output: the edges into Output sum the levels."""
    nodes = {"input": nir.Input(np.array(shape)), "output": nir.Output(np.array(shape))}
    edges = []
    for k, node in enumerate(neuron_nodes("layer", model, shape, dt)):
        nodes[f"level{k}"] = node
        edges += [("input", f"level{k}"), (f"level{k}", "output")]
    return nir.NIRGraph(nodes=nodes, edges=edges), len(nodes) - 2


@pytest.mark.parametrize(
    "thresholds, tau",
    [((0.6, 1.6, 2.6), 0.25), ((0.3, 0.5), 0.9), ((0.6,), 0.5), ((0.2, 0.9, 1.1, 3.0), 1.0)],
)
def test_k_parallel_lif_nodes_are_the_mlf_neuron(thresholds, tau):
    dt = 1e-4
    graph, levels = _k_lif_graph(mj.zoo.MLF(thresholds=thresholds, tau=tau), (5,), dt)
    assert levels == len(thresholds)
    kinds = {type(n) for k, n in graph.nodes.items() if k.startswith("level")}
    assert kinds == ({nir.IF} if tau == 1.0 else {nir.LIF})
    x = np.asarray(jax.random.uniform(jax.random.key(3), (60, 4, 5), minval=-0.5, maxval=2.5))
    ours = np.asarray(mj.mlf(x, thresholds=thresholds, tau=tau))
    theirs, _ = reference.run(graph, x, dt)
    np.testing.assert_array_equal(theirs, ours)
    # every level fires somewhere, and the counts reach K: the test sees all levels at work
    assert ours.max() == len(thresholds) and ours.min() == 0


def test_each_level_resets_on_its_own():
    # one step of input 1.0 then silence: levels below 1.0 fire and reset, the others keep
    # their (leaking) potential and never fire; MLF's count is the number of levels crossed
    dt, model = 1.0, mj.zoo.MLF(thresholds=(0.5, 0.9, 1.5), tau=0.5)
    graph, _ = _k_lif_graph(model, (1,), dt)
    x = np.zeros((4, 1, 1))
    x[0] = 1.0
    x[1] = 0.6  # level 3: 0.5 * 1.0 + 0.6 = 1.1 < 1.5; levels 1, 2 restart from 0: 0.6
    theirs, traces = reference.run(graph, x, dt)
    assert theirs[:, 0, 0].tolist() == [2.0, 1.0, 0.0, 0.0]
    assert [traces[f"level{k}"][:, 0, 0].tolist() for k in range(3)] == [
        [1.0, 1.0, 0.0, 0.0],
        [1.0, 0.0, 0.0, 0.0],
        [0.0, 0.0, 0.0, 0.0],
    ]
    np.testing.assert_array_equal(
        np.asarray(mj.mlf(x, thresholds=(0.5, 0.9, 1.5), tau=0.5)), theirs
    )


def test_a_level_fires_only_above_its_threshold():
    # the guide: NIR's v > v_threshold, strictly, as the library's H; a potential exactly at
    # a threshold (0.5 and 1.0, exact in binary; no leak memory: tau = 0) does not fire
    dt, model = 1.0, mj.zoo.MLF(thresholds=(0.5, 1.0), tau=0.0)
    graph, _ = _k_lif_graph(model, (1,), dt)
    x = np.array([0.5, 0.75, 1.0, 1.25]).reshape(4, 1, 1)
    theirs, _ = reference.run(graph, x, dt)
    assert theirs[:, 0, 0].tolist() == [0.0, 1.0, 1.0, 2.0]
    np.testing.assert_array_equal(np.asarray(mj.mlf(x, thresholds=(0.5, 1.0), tau=0.0)), theirs)
