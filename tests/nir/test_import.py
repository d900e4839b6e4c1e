"""mlf_jax.nir.from_nir on graphs written by hand (every node it reads), against the
independent NumPy reference; the refusals (the missing extra: tests/test_packaging.py)."""

import jax
import numpy as np
import pytest

pytest.importorskip("nir")

import nir  # noqa: E402

from mlf_jax.nir import NIRImportError, from_nir  # noqa: E402
from tests.nir import reference  # noqa: E402
from tests.nir._models import imported_run  # noqa: E402

RNG = np.random.default_rng(0)
DT = 1e-3


def _full(shape, value):
    return np.full(shape, value, np.float64)


def _lif(shape, tau, threshold, r=None, v_leak=0.0, **kw):
    r = tau / DT if r is None else r
    return nir.LIF(
        tau=_full(shape, tau),
        r=_full(shape, r),
        v_leak=_full(shape, v_leak),
        v_threshold=_full(shape, threshold),
        **kw,
    )


def _conv_graph() -> nir.NIRGraph:
    """Conv2d -> IF -> SumPool2d -> Scale -> CubaLIF -> AvgPool2d -> Flatten -> Linear -> LIF
    (r and v_leak not the identity) -> Affine -> LI, plus a skip Affine -> I into the output."""
    w = RNG.normal(0, 0.6, (3, 2, 3, 3)).astype(np.float32)
    nodes = {
        "input": nir.Input(np.array([2, 6, 6])),
        "conv": nir.Conv2d((6, 6), w, 1, 1, 1, 1, RNG.normal(0.2, 0.1, 3).astype(np.float32)),
        "if": nir.IF(r=_full((3, 6, 6), 1 / DT), v_threshold=_full((3, 6, 6), 0.8)),
        "sumpool": nir.SumPool2d(np.array([2, 2]), np.array([2, 2]), np.array([0, 0])),
        "scale": nir.Scale(RNG.uniform(0.5, 1.5, (3, 3, 3)).astype(np.float32)),
        "cuba": nir.CubaLIF(
            tau_syn=_full((3, 3, 3), 2 * DT),
            tau_mem=_full((3, 3, 3), 4 * DT),
            r=_full((3, 3, 3), 1.5),
            v_leak=_full((3, 3, 3), 0.1),
            v_threshold=_full((3, 3, 3), 0.3),
            w_in=_full((3, 3, 3), 2.0),
        ),
        "avgpool": nir.AvgPool2d(np.array([3, 3]), np.array([3, 3]), np.array([0, 0])),
        "flatten": nir.Flatten(np.array([3, 1, 1]), start_dim=0, end_dim=-1),
        "linear": nir.Linear(RNG.normal(0, 1.0, (4, 3)).astype(np.float32)),
        "lif": _lif((4,), tau=5 * DT, threshold=0.4, r=3.0, v_leak=0.2),
        "affine": nir.Affine(
            RNG.normal(0, 1, (2, 4)).astype(np.float32), np.array([0.1, -0.1], np.float32)
        ),
        "li": nir.LI(tau=_full((2,), 3 * DT), r=_full((2,), 3.0), v_leak=_full((2,), 0.0)),
        "skip": nir.Affine(RNG.normal(0, 0.3, (2, 3)).astype(np.float32), np.zeros(2, np.float32)),
        "integrator": nir.I(r=_full((2,), 0.5 / DT)),
        "output": nir.Output(np.array([2])),
    }
    chain = list(nodes)[:12]
    edges = list(zip(chain[:-1], chain[1:], strict=True))
    edges += [("flatten", "skip"), ("skip", "integrator"), ("integrator", "output")]
    edges += [("li", "output")]
    return nir.NIRGraph(nodes=nodes, edges=edges)


def test_every_node_it_reads_against_the_reference():
    graph = _conv_graph()
    x = np.asarray(jax.random.uniform(jax.random.key(0), (12, 3, 2, 6, 6), maxval=1.5))
    expected, traces = reference.run(graph, x, DT)
    model, variables = from_nir(graph, dt=DT)
    assert {s.kind for s in model.spec.steps} >= {"cubalif", "lif", "integrator", "sumpool"}
    out, spikes = imported_run(model, variables, x)
    np.testing.assert_allclose(np.asarray(out), expected, rtol=1e-4, atol=1e-4)
    for name in ("if", "cuba", "lif"):
        np.testing.assert_array_equal(np.asarray(spikes[name]), traces[name], err_msg=name)
        assert 0 < traces[name].mean() < 1, name


def test_lif_nodes_with_one_input_and_consumers_run_as_one_mlf_neuron():
    shape = (5,)
    nodes = {"input": nir.Input(np.array(shape)), "output": nir.Output(np.array(shape))}
    edges = []
    for k, th in enumerate((1.1, 0.2, 0.6)):  # any order: the levels are sorted
        nodes[f"n{k}"] = _lif(shape, tau=2 * DT, threshold=th)
        edges += [("input", f"n{k}"), (f"n{k}", "output")]
    graph = nir.NIRGraph(nodes=nodes, edges=edges)
    model, variables = from_nir(graph, dt=DT)
    (mlf,) = [s for s in model.spec.steps if s.kind == "mlf"]
    assert mlf.names == ("n1", "n2", "n0")
    x = np.asarray(jax.random.uniform(jax.random.key(2), (20, 2, 5), minval=-0.3, maxval=1.6))
    np.testing.assert_array_equal(
        np.asarray(imported_run(model, variables, x, return_spikes=False)),
        reference.run(graph, x, DT)[0],
    )


def _one(node, shape=(3,)):
    return nir.NIRGraph.from_list(nir.Input(np.array(shape)), node, nir.Output(np.array(shape)))


@pytest.mark.parametrize(
    "graph, message",
    [
        (_one(nir.Delay(np.ones(3))), r"^node 'delay': Delay has no mlf_jax counterpart$"),
        (
            nir.NIRGraph.from_list(
                nir.Input(np.array([1, 5])),
                nir.Conv1d(5, np.ones((1, 1, 3)), 1, 1, 1, 1, np.zeros(1)),
                nir.Output(np.array([1, 5])),
            ),
            r"^node 'conv1d': Conv1d has no mlf_jax counterpart$",
        ),
        (
            _one(nir.NIRGraph.from_list(nir.Input(np.array([3])), nir.Output(np.array([3])))),
            r"^node 'nirgraph': a nested graph .* has no mlf_jax counterpart$",
        ),
        (
            _one(_lif((3,), tau=2 * DT, threshold=0.5, v_reset=_full((3,), 0.1))),
            r"^node 'lif': v_reset other than 0",
        ),
        (
            _one(
                nir.LIF(
                    tau=np.array([2e-3, 3e-3, 2e-3]),
                    r=_full((3,), 2.0),
                    v_leak=_full((3,), 0.0),
                    v_threshold=_full((3,), 0.5),
                )
            ),
            r"^node 'lif': its time constant tau differs between units",
        ),
        (
            _one(_lif((3,), tau=0.5 * DT, threshold=0.5)),
            r"^node 'lif': a NIR LIF time constant below the step dt=0.001",
        ),
        (
            _one(
                nir.CubaLIF(
                    tau_syn=_full((3,), 0.5 * DT),
                    tau_mem=_full((3,), 2 * DT),
                    r=_full((3,), 1.0),
                    v_leak=_full((3,), 0.0),
                    v_threshold=_full((3,), 0.5),
                )
            ),
            r"^node 'cubalif': a NIR LIF time constant below the step dt=0.001",
        ),
    ],
    ids=[
        "delay",
        "conv1d",
        "subgraph",
        "v_reset",
        "per-unit-tau",
        "tau-below-dt",
        "tau-syn-below-dt",
    ],
)
def test_what_has_no_counterpart_is_refused_in_one_line(graph, message):
    with pytest.raises(NIRImportError, match=message) as info:
        from_nir(graph, dt=DT)
    assert "\n" not in str(info.value)


def test_a_recurrent_graph_is_refused():
    shape = (3,)
    nodes = {
        "input": nir.Input(np.array(shape)),
        "lif": _lif(shape, tau=2 * DT, threshold=0.5),
        "w": nir.Linear(np.eye(3, dtype=np.float32)),
        "output": nir.Output(np.array(shape)),
    }
    edges = [("input", "lif"), ("lif", "w"), ("w", "lif"), ("lif", "output")]
    with pytest.raises(NIRImportError, match="a cycle .recurrent edges. has no mlf_jax"):
        from_nir(nir.NIRGraph(nodes=nodes, edges=edges), dt=DT)


def test_what_is_not_a_nir_graph_is_refused_naming_nir_read():
    with pytest.raises(TypeError, match=r"^from_nir reads a nir.NIRGraph .*nir.read.*got str$"):
        from_nir("model.nir")


def test_a_dt_that_is_not_a_step_is_refused():
    graph = _one(nir.Scale(np.ones(3, np.float32)))  # no neuron: nothing else reads dt
    with pytest.raises(ValueError, match=r"^dt must be a positive step in seconds, got '1ms'$"):
        from_nir(graph, dt="1ms")
    graph.metadata = {"dt": -1.0}
    with pytest.raises(ValueError, match=r"^dt must be a positive step in seconds, got -1.0$"):
        from_nir(graph)


def test_an_unknown_readout_in_the_metadata_is_refused():
    graph = _one(nir.Scale(np.ones(3, np.float32)))
    graph.metadata = {"readout": "max_over_time"}
    with pytest.raises(NIRImportError, match=r"^graph: metadata readout 'max_over_time' is not"):
        from_nir(graph, dt=DT)


def _image_graph(**metadata) -> nir.NIRGraph:
    """Input [2, 4, 4] -> Output, as to_nir records it (images [B, H, W, C] taken)."""
    graph = nir.NIRGraph.from_list(nir.Input(np.array([2, 4, 4])), nir.Output(np.array([2, 4, 4])))
    graph.metadata = {"input_layout": "NHWC", "time_steps": 3, **metadata}
    return graph


@pytest.mark.parametrize(
    "metadata, x, error, message",
    [
        # raw pixels, which the original ResNet refuses too: not silently cast
        (
            {},
            np.zeros((2, 4, 4, 2), np.uint8),
            TypeError,
            r"^NIRModel expects floating input, got dtype uint8: preprocess",
        ),
        # a rate-coded model's graph takes encoded steps, not the images repeated
        (
            {"encoder": "rate"},
            np.zeros((2, 4, 4, 2)),
            ValueError,
            r"^the graph's model encodes images by 'rate'",
        ),
        # the integrator's value at step T is the mean only over the T it was written for
        (
            {"readout": "last_step"},
            np.zeros((5, 2, 4, 4, 2)),
            ValueError,
            r"^the graph's readout is its integrator at step T=3 .* got 5 steps",
        ),
    ],
    ids=["integer-pixels", "rate-encoder", "integrator-other-T"],
)
def test_input_the_graph_would_run_wrongly_is_refused_in_one_line(metadata, x, error, message):
    model, variables = from_nir(_image_graph(**metadata), dt=DT)
    with pytest.raises(error, match=message):
        model.apply(variables, x)
    # what it does take
    steps = np.zeros((3, 2, 4, 4, 2), np.float32)
    assert model.apply(variables, steps).shape[-3:] == (2, 4, 4)


def test_the_spikes_of_a_layers_nodes_are_summed():
    # two LIF nodes of one layer (its metadata) that do not make an MLF neuron (the same
    # threshold, other leaks): the layer's spikes are both nodes' summed, as an MLF layer's
    shape = (4,)
    nodes = {"input": nir.Input(np.array(shape)), "output": nir.Output(np.array(shape))}
    for k, tau in enumerate((2 * DT, 5 * DT)):
        nodes[f"n{k}"] = _lif(shape, tau=tau, threshold=0.5, metadata={"layer": "pop"})
    edges = [("input", "n0"), ("input", "n1"), ("n0", "output"), ("n1", "output")]
    graph = nir.NIRGraph(nodes=nodes, edges=edges)
    x = np.asarray(jax.random.uniform(jax.random.key(4), (15, 2, 4), maxval=1.2))
    _, traces = reference.run(graph, x, DT)
    model, variables = from_nir(graph, dt=DT)
    _, spikes = imported_run(model, variables, x)
    assert sorted(spikes) == ["pop"]
    np.testing.assert_array_equal(np.asarray(spikes["pop"]), traces["n0"] + traces["n1"])
    assert (traces["n0"] != traces["n1"]).any()


def test_node_names_that_make_the_same_scope_keep_their_own_weights():
    # parameters are scoped by the node's name with "." and "/" made "_": "a.b" and "a_b"
    # must not share a scope
    nodes = {
        "input": nir.Input(np.array([2])),
        "a.b": nir.Scale(np.array([2.0, 3.0], np.float32)),
        "a_b": nir.Scale(np.array([5.0, 7.0], np.float32)),
        "output": nir.Output(np.array([2])),
    }
    edges = [("input", "a.b"), ("a.b", "a_b"), ("a_b", "output")]
    model, variables = from_nir(nir.NIRGraph(nodes=nodes, edges=edges), dt=DT)
    out = model.apply(variables, np.ones((1, 1, 2), np.float32))
    np.testing.assert_array_equal(np.asarray(out)[0, 0], [10.0, 21.0])


def test_a_graph_with_a_node_fed_by_nothing_is_refused_naming_it():
    nodes = {
        "input": nir.Input(np.array([3])),
        "w": nir.Linear(np.eye(3, dtype=np.float32)),
        "lonely": nir.Linear(np.eye(3, dtype=np.float32)),
        "output": nir.Output(np.array([3])),
    }
    edges = [("input", "w"), ("w", "output"), ("lonely", "output")]
    graph = nir.NIRGraph(nodes=nodes, edges=edges)  # nir gives "lonely" an Input of its own
    with pytest.raises(NIRImportError, match=r"got Input \['input', 'input_lonely'\] and Out"):
        from_nir(graph, dt=DT)
