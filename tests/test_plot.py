"""mj.plot draws what it is given: data of the drawn artists against the inputs, by hand."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

matplotlib = pytest.importorskip("matplotlib", reason="the 'notebooks' extra is not installed")
matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.colors import LogNorm  # noqa: E402

import mlf_jax as mj  # noqa: E402

from .ds_resnet8_layers import DS_RESNET8_NEURONS  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _nothing_is_shown(monkeypatch):
    def show(*args, **kwargs):
        raise AssertionError("plt.show() was called")

    monkeypatch.setattr(plt, "show", show)
    yield
    plt.close("all")


def _by_gid(artists, gid):
    return [a for a in artists if a.get_gid() == gid]


# -- lazy import ------------------------------------------------------------------------------


def test_import_mlf_jax_does_not_load_matplotlib_and_mj_plot_does():
    probe = (
        "import json, sys\n"
        "import mlf_jax as mj\n"
        "before = 'matplotlib' in sys.modules\n"
        "f = mj.plot.grad_heatmap\n"
        "print(json.dumps({'before': before, 'after': 'matplotlib' in sys.modules,"
        " 'in_dir': 'plot' in dir(mj), 'in_all': 'plot' in mj.__all__}))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out == {"before": False, "after": True, "in_dir": True, "in_all": True}


# -- spike_raster -----------------------------------------------------------------------------


def _raster_points(counts):
    """``{(t, n): count}`` of the non-zero entries of a [T, N] array, by loops."""
    return {
        (t, n): counts[t][n]
        for t in range(len(counts))
        for n in range(len(counts[0]))
        if counts[t][n]
    }


def _drawn_points(ax, values):
    (points,) = _by_gid(ax.collections, "spikes")
    offsets = np.asarray(points.get_offsets())
    return {(int(t), int(n)): float(v) for (t, n), v in zip(offsets, values(points), strict=True)}


def test_spike_raster_by_colour_puts_each_count_at_its_step_and_neuron():
    counts = [[0, 2, 0, 1], [3, 0, 0, 0], [0, 0, 1, 1]]  # [T=3, N=4]
    ax = mj.plot.spike_raster(np.array(counts))
    assert _drawn_points(ax, lambda p: p.get_array()) == _raster_points(counts)
    assert ax.get_xlim() == (-0.5, 2.5) and ax.get_ylim() == (-0.5, 3.5)
    assert ax.get_legend() is not None  # counts 1..3: a legend of the levels


def test_spike_raster_by_size_scales_the_marker_area_with_the_count():
    counts = [[0, 2], [1, 0]]
    ax = mj.plot.spike_raster(np.array(counts), by="size", marker_size=10.0)
    drawn = _drawn_points(ax, lambda p: np.asarray(p.get_sizes()) / 10.0)
    assert drawn == _raster_points(counts)


def test_spike_raster_of_a_recorded_layer_draws_one_example_flattened():
    rng = np.random.default_rng(0)
    spikes = rng.integers(0, 4, size=(3, 2, 2, 3)).astype(np.float32)  # [T, B, H, W]
    ax = mj.plot.spike_raster(spikes, sample=1, max_neurons=5)
    want = {}
    for t in range(3):
        for h in range(2):
            for w in range(3):
                n = 3 * h + w  # C order
                if n < 5 and spikes[t, 1, h, w]:
                    want[(t, n)] = float(spikes[t, 1, h, w])
    assert _drawn_points(ax, lambda p: p.get_array()) == want


def test_spike_raster_draws_on_the_given_axes():
    fig, ax = plt.subplots()
    assert mj.plot.spike_raster(np.eye(3), ax=ax) is ax


@pytest.mark.parametrize(
    "spikes, kw, message",
    [
        (np.zeros(3), {}, "spikes must be a non-empty"),
        (np.zeros((2, 3)), {"sample": 0}, "sample must be None"),
        (np.zeros((2, 3, 4)), {"sample": 3}, "sample 3 is out of range"),
        (np.full((2, 2), 0.5), {}, "non-negative integer"),
        (np.full((2, 2), -1.0), {}, "non-negative integer"),
        (np.zeros((2, 2)), {"by": "shape"}, "by must be one of"),
        (np.zeros((2, 2)), {"max_neurons": 0}, "max_neurons must be a positive"),
    ],
)
def test_spike_raster_rejects_bad_input(spikes, kw, message):
    with pytest.raises(ValueError, match=message):
        mj.plot.spike_raster(spikes, **kw)


# -- membrane ---------------------------------------------------------------------------------

THRESHOLDS = (0.6, 1.6, 2.6)


def test_membrane_draws_each_level_its_threshold_and_its_rectangular_window():
    rng = np.random.default_rng(1)
    u = rng.normal(1.0, 1.0, size=(6, 3))
    ax = mj.plot.membrane(u, THRESHOLDS, mj.rectangular(1.0))
    traces = _by_gid(ax.lines, "membrane")
    assert len(traces) == 3
    for k, line in enumerate(traces):
        np.testing.assert_array_equal(line.get_xdata(), np.arange(6))
        np.testing.assert_array_equal(line.get_ydata(), u[:, k])
    assert [tuple(line.get_ydata()) for line in _by_gid(ax.lines, "threshold")] == [
        (0.6, 0.6),
        (1.6, 1.6),
        (2.6, 2.6),
    ]
    windows = _by_gid(ax.patches, "surrogate_window")
    spans = [(w.get_y(), w.get_y() + w.get_height()) for w in windows]
    np.testing.assert_allclose(spans, [(0.1, 1.1), (1.1, 2.1), (2.1, 3.1)])  # th -/+ width/2
    marked = _by_gid(ax.lines, "spikes")
    assert len(marked) == 3
    for k, marks in enumerate(marked):
        fired = [t for t in range(6) if u[t, k] > THRESHOLDS[k]]
        np.testing.assert_array_equal(marks.get_xdata(), fired)


def test_membrane_at_one_time_step_draws_a_marker_per_level():
    """Every shipped model runs T = 1: a line through one point has no length."""
    ax = mj.plot.membrane(np.array([[0.3, 0.1, -0.2]]), THRESHOLDS, mj.rectangular(1.0))
    traces = _by_gid(ax.lines, "membrane")
    assert len(traces) == 3 and all(line.get_marker() == "o" for line in traces)
    many = mj.plot.membrane(np.zeros((4, 3)), THRESHOLDS)
    assert all(line.get_marker() in (None, "None", "") for line in _by_gid(many.lines, "membrane"))


def test_membrane_triangle_window_is_the_half_width_either_side():
    ax = mj.plot.membrane(np.zeros((4, 1)), (1.0,), mj.triangle(0.5))
    (window,) = _by_gid(ax.patches, "surrogate_window")
    np.testing.assert_allclose([window.get_y(), window.get_y() + window.get_height()], [0.5, 1.5])


def test_membrane_of_a_recorded_layer_draws_the_chosen_unit():
    rng = np.random.default_rng(2)
    u = rng.normal(size=(5, 3, 2, 4))  # [T, K, B, units]
    ax = mj.plot.membrane(u, THRESHOLDS, unit=(1, 2), mark_spikes=False)
    for k, line in enumerate(_by_gid(ax.lines, "membrane")):
        np.testing.assert_array_equal(line.get_ydata(), [u[t, k, 1, 2] for t in range(5)])
    flat = mj.plot.membrane(u, THRESHOLDS, unit=1 * 4 + 2, mark_spikes=False)
    np.testing.assert_array_equal(_by_gid(flat.lines, "membrane")[2].get_ydata(), u[:, 2, 1, 2])
    assert not _by_gid(ax.patches, "surrogate_window")  # no surrogate, no windows
    assert not _by_gid(ax.lines, "spikes")


def test_membrane_shades_nothing_for_a_surrogate_without_compact_support():
    ax = mj.plot.membrane(np.zeros(4), (0.6,), "sigmoid")  # [T]: one level
    assert len(_by_gid(ax.lines, "membrane")) == 1
    assert not _by_gid(ax.patches, "surrogate_window")


@pytest.mark.parametrize(
    "u, thresholds, kw, message",
    [
        (np.zeros((4, 2)), THRESHOLDS, {}, "K=2 levels .* but 3 thresholds"),
        (np.zeros((4, 3)), THRESHOLDS, {"unit": 0}, "unit must be None"),
        (np.zeros((4, 3, 2)), THRESHOLDS, {"unit": 2}, "unit 2 is out of range"),
        (np.zeros((4, 3, 2, 2)), THRESHOLDS, {"unit": (0,)}, "must be 2 integers"),
        (np.zeros((4, 3)), (), {}, "thresholds must be a non-empty"),
        (np.zeros(()), (0.6,), {}, "u must be"),
    ],
)
def test_membrane_rejects_bad_input(u, thresholds, kw, message):
    with pytest.raises(ValueError, match=message):
        mj.plot.membrane(u, thresholds, **kw)


# -- layer_activity ---------------------------------------------------------------------------

# forward order of a DS-ResNet-8's neuron layers, written out by hand
FORWARD = DS_RESNET8_NEURONS


def _shuffled(values):
    """The same mapping with its keys in another (sorted, as jax.tree returns) order."""
    return {k: values[k] for k in sorted(values)}


def _heights(ax, gid):
    return [
        [patch.get_height() for patch in c.patches]
        for c in ax.containers
        if c.patches and c.patches[0].get_gid() == gid
    ]


def test_layer_activity_bars_are_the_values_in_forward_order():
    rates = {k: 0.1 * (i + 1) for i, k in enumerate(FORWARD)}
    dormant = {k: 0.5 + 0.05 * i for i, k in enumerate(FORWARD)}
    fig = mj.plot.layer_activity(_shuffled(rates), _shuffled(dormant), levels=3)
    top, bottom = fig.axes
    np.testing.assert_allclose(_heights(top, "firing_rate"), [[0.1 * i for i in range(1, 10)]])
    np.testing.assert_allclose(
        _heights(bottom, "dormant_fraction"), [[0.5 + 0.05 * i for i in range(9)]]
    )
    assert [t.get_text() for t in bottom.get_xticklabels()] == FORWARD
    assert bottom.get_ylim() == (0.0, 1.0)


def test_layer_activity_compares_several_networks_side_by_side():
    a = {k: 0.2 for k in FORWARD}
    b = {k: 0.4 for k in FORWARD}
    fig, ax = plt.subplots()
    out = mj.plot.layer_activity(dormant_fractions={"LIF": a, "MLF": _shuffled(b)}, axes=ax)
    assert out is fig
    assert _heights(ax, "dormant_fraction") == [[0.2] * 9, [0.4] * 9]
    assert [c.get_label() for c in ax.containers] == ["LIF", "MLF"]
    left, right = ([p.get_x() for p in c.patches] for c in ax.containers)
    assert all(x < y for x, y in zip(left, right, strict=True))  # LIF left of MLF per layer


def test_layer_activity_of_networks_with_different_layers_leaves_gaps():
    spiking = {k: 0.3 for k in FORWARD if "shortcut" not in k}  # no shortcut neurons
    ds = {k: 0.6 for k in FORWARD}
    fig = mj.plot.layer_activity(dormant_fractions={"spiking": spiking, "DS": ds})
    (ax,) = fig.axes
    assert [t.get_text() for t in ax.get_xticklabels()] == FORWARD
    first, second = ax.containers
    gaps = [i for i, k in enumerate(FORWARD) if "shortcut" in k]
    assert [round(p.get_x() + p.get_width() / 2 + 0.2) for p in first.patches] == [
        i for i in range(9) if i not in gaps
    ]  # centred 0.2 left of each layer with a value
    assert [p.get_height() for p in first.patches] == [0.3] * 7
    assert [p.get_height() for p in second.patches] == [0.6] * 9


@pytest.mark.parametrize(
    "kw, message",
    [
        ({}, "give firing_rates, dormant_fractions or both"),
        ({"dormant_fractions": {"a": 1.5}}, r"dormant_fraction values must be in \[0, 1\]"),
        ({"firing_rates": {"a": -0.1}}, "firing_rate values must be >= 0"),
        ({"firing_rates": {"a": float("nan")}}, "must be a finite number"),
        ({"firing_rates": {"a": "x"}}, "must be a finite number"),
        ({"firing_rates": {}}, "non-empty mapping"),
        ({"firing_rates": {"x": {"a": 0.1}, "b": 0.2}}, "mixes layer values"),
    ],
)
def test_layer_activity_rejects_bad_input(kw, message):
    with pytest.raises(ValueError, match=message):
        mj.plot.layer_activity(**kw)


def test_layer_activity_needs_one_axes_per_panel():
    fig, ax = plt.subplots()
    with pytest.raises(ValueError, match="axes must be 2 matplotlib Axes"):
        mj.plot.layer_activity({"a": 0.1}, {"a": 0.5}, axes=ax)


# -- grad_heatmap -----------------------------------------------------------------------------


def test_grad_heatmap_image_is_time_by_layer_in_forward_order():
    norms = {k: np.array([1.0 + i, 10.0 * (i + 1)]) for i, k in enumerate(FORWARD)}  # T = 2
    ax = mj.plot.grad_heatmap(_shuffled(norms))
    (image,) = _by_gid(ax.images, "grad_norms")
    want = [[1.0 + i for i in range(9)], [10.0 * (i + 1) for i in range(9)]]
    np.testing.assert_array_equal(np.ma.getdata(image.get_array()), want)
    assert isinstance(image.norm, LogNorm)
    assert (image.norm.vmin, image.norm.vmax) == (1.0, 90.0)
    assert [t.get_text() for t in ax.get_xticklabels()] == FORWARD
    assert len(ax.figure.axes) == 2  # the heatmap and its colorbar


def test_grad_heatmap_from_activation_grad_norms():
    import jax

    model = mj.models.resnet(8, widths=(4, 4, 4), num_classes=3, time_steps=2, in_channels=1)
    x = jax.random.normal(jax.random.key(0), (4, 8, 8, 1))
    variables = model.init(jax.random.key(1), x, train=False)
    norms = mj.analysis.activation_grad_norms(model, variables, x, np.array([0, 1, 2, 0]))
    fig, ax = plt.subplots()
    mj.plot.grad_heatmap(norms, ax=ax, log=False, colorbar=False)
    (image,) = ax.images
    assert list(norms) == FORWARD  # what activation_grad_norms returns: forward order
    want = [[float(norms[layer][t]) for layer in FORWARD] for t in range(2)]
    np.testing.assert_array_equal(np.asarray(image.get_array()), want)
    assert len(fig.axes) == 1


def test_grad_heatmap_takes_a_shared_colour_scale():
    ax = mj.plot.grad_heatmap({"a": np.array([0.5, 2.0])}, vmin=0.1, vmax=10.0, colorbar=False)
    (image,) = ax.images
    assert isinstance(image.norm, LogNorm) and (image.norm.vmin, image.norm.vmax) == (0.1, 10.0)
    with pytest.raises(ValueError, match="needs 0 < vmin < vmax"):
        mj.plot.grad_heatmap({"a": np.ones(2)}, vmin=0.0)
    with pytest.raises(ValueError, match="vmin < vmax"):
        mj.plot.grad_heatmap({"a": np.ones(2)}, log=False, vmin=2.0, vmax=1.0)


def test_membrane_legend_is_optional():
    assert mj.plot.membrane(np.zeros((3, 1)), (0.6,)).get_legend() is not None
    assert mj.plot.membrane(np.zeros((3, 1)), (0.6,), legend=False).get_legend() is None


def test_grad_heatmap_labels_at_most_max_labels_layers():
    norms = {f"layer{i:02d}": np.ones(1) for i in range(10)}
    ax = mj.plot.grad_heatmap(norms, max_labels=4, colorbar=False)
    assert [t.get_text() for t in ax.get_xticklabels()] == [
        "layer00",
        "layer03",
        "layer06",
        "layer09",
    ]


@pytest.mark.parametrize(
    "norms, message",
    [
        ({}, "non-empty mapping"),
        ([np.ones(2)], "non-empty mapping"),
        ({"a": np.ones(2), "b": np.ones(3)}, "same number of time steps"),
        ({"a": np.ones((2, 2))}, "1-D"),
        ({"a": np.array([1.0, -1.0])}, "finite and >= 0"),
        ({"a": np.array([1.0, np.inf])}, "finite and >= 0"),
    ],
)
def test_grad_heatmap_rejects_bad_input(norms, message):
    with pytest.raises(ValueError, match=message):
        mj.plot.grad_heatmap(norms)
