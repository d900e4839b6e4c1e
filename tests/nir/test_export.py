"""mlf_jax.nir.to_nir: what each layer becomes, the graph run by the independent NumPy
reference against the Linen model, and the refusals."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

pytest.importorskip("nir")

import nir  # noqa: E402
from flax import linen as nn  # noqa: E402

import mlf_jax as mj  # noqa: E402
from mlf_jax.nir import NIRExportError, tdbn_fold, to_nir  # noqa: E402
from tests.nir import reference  # noqa: E402
from tests.nir._models import linen_run, nchw_steps, small  # noqa: E402


@pytest.fixture(scope="module")
def ds():
    net, variables, x = small("ds", learn_thresholds=True, learn_tau=True, tau=0.5)
    return net, variables, x, to_nir(net, variables, input_shape=(8, 8, 2))


@pytest.fixture(scope="module")
def standard():
    net, variables, x = small(
        "standard", time_steps=2, neuron=mj.zoo.LIF(tau=0.3, threshold=0.5), input_norm=True
    )
    return net, variables, x, to_nir(net, variables, input_shape=(8, 8, 2), dt=1e-3)


def _preds(graph, name):
    return sorted(a for a, b in graph.edges if b == name)


def test_a_ds_block_is_k_lif_nodes_and_its_shortcut_edges(ds):
    _, _, _, g = ds
    assert g.metadata["readout"] == "mean_over_time" and g.metadata["time_steps"] == 3
    levels = [f"stage1_block1.neuron2.{k}" for k in range(3)]
    assert all(isinstance(g.nodes[n], nir.LIF) for n in levels)
    # the identity shortcut: the next block's convolutions get the block's input (the stem's
    # three levels) besides the block's own three levels
    stem = [f"stem_neuron.{k}" for k in range(3)]
    assert _preds(g, "stage2_block1.conv1") == sorted(levels + stem)
    assert _preds(g, "stage2_block1.shortcut_conv") == sorted(levels + stem)
    # a projection shortcut of a DS block has its own neuron, whose levels feed onward
    out2 = [f"stage2_block1.neuron2.{k}" for k in range(3)]
    short2 = [f"stage2_block1.shortcut_neuron.{k}" for k in range(3)]
    assert _preds(g, "stage3_block1.conv1") == sorted(out2 + short2)
    assert _preds(g, "stage1_block1.neuron2.0") == ["stage1_block1.conv2"]
    assert _preds(g, "head") == ["flatten"] and _preds(g, "flatten") == ["pool"]
    pool = g.nodes["pool"]
    assert isinstance(pool, nir.AvgPool2d) and pool.kernel_size.tolist() == [2, 2]


def test_learned_thresholds_and_leak_are_the_layers(ds):
    net, variables, _, g = ds
    params = variables["params"]["stage2_block1"]["neuron1"]
    # what the Linen layer computes with (decoded by jnp at run time; the export decodes
    # its own copy of the parameters with with_params)
    thresholds, tau = mj.nn.Neuron(model=net.neuron_model()).constants(params)
    nodes = [g.nodes[f"stage2_block1.neuron1.{k}"] for k in range(3)]
    np.testing.assert_allclose([n.v_threshold.flat[0] for n in nodes], thresholds, rtol=1e-6)
    assert not np.allclose(thresholds, mj.zoo.MLF().thresholds)  # the perturbed, learned ones
    leak = 1 - g.metadata["dt"] / nodes[0].tau.flat[0]
    assert leak == pytest.approx(float(tau), rel=1e-6) and abs(float(tau) - 0.5) > 1e-3


def test_a_spiking_resnet_block_sums_before_its_neuron(standard):
    _, _, _, g = standard
    assert _preds(g, "stage1_block1.neuron2.0") == sorted(["stage1_block1.conv2", "stem_neuron.0"])
    assert _preds(g, "stage2_block1.neuron2.0") == sorted(
        ["stage2_block1.conv2", "stage2_block1.shortcut_conv"]
    )
    assert "stage2_block1.shortcut_neuron.0" not in g.nodes
    assert isinstance(g.nodes["input_bn"], nir.Conv2d)  # input tdBN as a diagonal 1x1 conv


@pytest.mark.parametrize("which", ["ds", "standard"])
def test_the_graph_run_by_a_nir_reference_is_the_linen_model(which, request):
    net, variables, x, g = request.getfixturevalue(which)
    logits, spikes = linen_run(net, variables, x)
    out, traces = reference.run(g, nchw_steps(x, net.time_steps), g.metadata["dt"])
    np.testing.assert_allclose(out.mean(axis=0), logits, atol=2e-5)
    for layer, s in spikes.items():
        nodes = [n for n, node in g.nodes.items() if node.metadata.get("layer") == layer]
        assert nodes, layer
        np.testing.assert_array_equal(sum(traces[n] for n in nodes), s, err_msg=layer)
        assert 0 < s.mean() and s.min() == 0, layer


def test_the_integrator_readout_is_the_mean_at_the_last_step(ds):
    net, variables, x, _ = ds
    g = to_nir(net, variables, input_shape=(8, 8, 2), readout="integrator")
    assert isinstance(g.nodes["readout"], nir.I) and g.metadata["readout"] == "last_step"
    out, _ = reference.run(g, nchw_steps(x, net.time_steps), g.metadata["dt"])
    np.testing.assert_allclose(out[-1], linen_run(net, variables, x)[0], atol=2e-5)
    with pytest.raises(ValueError, match="unknown readout 'sum'; expected one of"):
        to_nir(net, variables, input_shape=(8, 8, 2), readout="sum")


def test_tdbn_fold_is_conv_then_tdbn():
    x = jax.random.normal(jax.random.key(0), (2, 5, 5, 3))
    conv = nn.Conv(4, (3, 3), padding=((1, 1), (1, 1)), use_bias=False)
    bn = mj.nn.TdBatchNorm(use_running_average=True, v_th=0.7, epsilon=1e-3)
    kernel = conv.init(jax.random.key(1), x)["params"]["kernel"]
    y = conv.apply({"params": {"kernel": kernel}}, x)
    stats = {"mean": jnp.array([0.1, -0.2, 0.3, 0.0]), "var": jnp.array([0.5, 1.0, 2.0, 0.1])}
    bnp = {"scale": jnp.array([1.0, 0.5, 2.0, -1.0]), "bias": jnp.array([0.0, 0.1, -0.1, 0.3])}
    expected = bn.apply({"params": bnp, "batch_stats": stats}, y)
    weight, bias = tdbn_fold(kernel, stats, bnp, v_th=0.7, epsilon=1e-3)
    folded = reference.conv2d(
        np.moveaxis(np.asarray(x), -1, 1),
        nir.Conv2d(None, weight, 1, 1, 1, 1, bias),
    )
    np.testing.assert_allclose(np.moveaxis(folded, 1, -1), expected, rtol=1e-5, atol=1e-5)


def test_written_graphs_read_back_type_checked(ds, tmp_path):
    *_, g = ds
    nir.write(tmp_path / "ds.nir", g)
    back = nir.read(tmp_path / "ds.nir")
    assert set(back.nodes) == set(g.nodes) and sorted(back.edges) == sorted(g.edges)


class _Custom(nn.Module):
    @nn.compact
    def __call__(self, x):
        return (x > 0).astype(x.dtype)


class _OwnLIF(mj.zoo.NeuronModel):
    """A neuron model of one's own (not a dataclass): its dynamics are its own."""

    def params(self):
        return {"threshold": 0.6}

    def init(self, x0):
        return mj.neurons.lif_init(x0)

    def step(self, state, x, params):
        return mj.neurons.lif_step(state, x, threshold=params["threshold"], tau=0.5)

    def level_thresholds(self, params=None):
        return (0.6,)


@pytest.mark.parametrize(
    "neuron, message",
    [
        (mj.zoo.AdaptiveLIF(), r"^stem_neuron: the neuron AdaptiveLIF has no NIR counterpart"),
        (_OwnLIF(), r"^stem_neuron: the neuron _OwnLIF has no NIR counterpart"),
        (functools.partial(_Custom), r"^neuron: a factory of spiking layers has no NIR"),
    ],
)
def test_a_neuron_nir_cannot_express_is_refused_naming_the_layer(neuron, message):
    net = mj.models.resnet(8, widths=(2, 2, 2), time_steps=1, neuron=neuron)
    variables = jax.jit(net.init)(jax.random.key(0), jnp.zeros((1, 4, 4, 1)))
    with pytest.raises(NIRExportError, match=message) as info:
        to_nir(net, variables, input_shape=(4, 4, 1))
    assert "\n" not in str(info.value)


def test_only_a_resnet_exports():
    with pytest.raises(TypeError, match="exports an mlf_jax.models.ResNet, got Dense"):
        to_nir(nn.Dense(3), {}, input_shape=(1, 1, 1))


@pytest.mark.parametrize(
    "input_shape, message",
    [
        ((8, 8), r"^input_shape is one input step \(H, W, C\) .*, got \(8, 8\)$"),
        ((8, 0, 2), r"^input_shape is one input step \(H, W, C\) .*, got \(8, 0, 2\)$"),
        # NIR's (C, H, W) given where the model's (H, W, C) is meant
        ((2, 8, 8), r"^input_shape \(2, 8, 8\): the net takes 2 channels, the last axis"),
    ],
    ids=["rank-2", "empty", "chw"],
)
def test_a_wrong_input_shape_is_refused_in_one_line(ds, input_shape, message):
    net, variables, _, _ = ds
    with pytest.raises(NIRExportError, match=message) as info:
        to_nir(net, variables, input_shape=input_shape)
    assert "\n" not in str(info.value)


def test_variables_that_do_not_fit_the_net_are_refused_naming_what_differs(ds):
    net, variables, _, _ = ds
    cases = [
        ({}, r"no params/stem_conv/kernel of a ResNet"),
        ({"variables": variables}, r"no params/stem_conv/kernel of a ResNet"),
        (
            {"params": variables["params"]},
            r"\['batch_stats'\]\['stage1_block1'\]\['bn1'\]\['mean'\] is missing",
        ),
        # the weights of another net: a width differs
        (
            small("ds", widths=(4, 8, 16), learn_thresholds=True, learn_tau=True)[1],
            r"\['stage3_block1'\]\['bn1'\]\['mean'\] is \(16,\) but the model's is \(8,\)",
        ),
        # the weights of a net whose thresholds were not learned
        (
            small("ds", tau=0.5)[1],
            r"\['params'\]\['stage1_block1'\]\['neuron1'\]\['tau_logit'\] is missing",
        ),
    ]
    for given, message in cases:
        with pytest.raises(NIRExportError, match="^variables: .*" + message) as info:
            to_nir(net, given, input_shape=(8, 8, 2))
        assert "\n" not in str(info.value)


@pytest.mark.parametrize("dt", [0.0, -1e-4, float("nan"), "1ms"])
def test_a_dt_that_is_not_a_step_is_refused(ds, dt):
    net, variables, _, _ = ds
    with pytest.raises(ValueError, match=r"^dt must be a positive step in seconds, got "):
        to_nir(net, variables, input_shape=(8, 8, 2), dt=dt)
