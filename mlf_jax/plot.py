"""Plots of spiking activity: spike rasters, membrane traces, per-layer activity, gradient flow.

Each function draws numpy/JAX arrays or the outputs of :mod:`mlf_jax.analysis` onto a
matplotlib ``Axes`` (a new figure when none is given) and returns what it drew on; none
calls ``plt.show()``. Loaded on first use (``mj.plot``), so ``import mlf_jax`` does not
import matplotlib.

* :func:`spike_raster`: which neuron fired how many spikes at which step;
* :func:`membrane`: per-level membrane potentials with the thresholds and the surrogate
  windows (where a level passes a gradient);
* :func:`layer_activity`: firing rate and dormant fraction of every neuron layer, in
  forward order, for one network or several side by side;
* :func:`grad_heatmap`: the gradient reaching each neuron layer's spikes at each time
  step (:func:`mlf_jax.analysis.activation_grad_norms`), through depth and time.

Every artist a test or a caller may want to find carries a ``gid`` (``'spikes'``,
``'membrane'``, ``'threshold'``, ``'surrogate_window'``, ``'firing_rate'``,
``'dormant_fraction'``, ``'grad_norms'``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

try:
    import matplotlib
    import matplotlib.colors as mcolors
    import numpy as np
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator
except ModuleNotFoundError as _error:  # a missing extra, named in one line
    from mlf_jax.extras import missing_extra

    raise missing_extra("mlf_jax.plot", "notebooks", _error) from _error

from mlf_jax.analysis import LayerRecord, forward_order, surrogate_windows
from mlf_jax.surrogate import Surrogate

__all__ = ["spike_raster", "membrane", "layer_activity", "grad_heatmap"]

#: Colours of the levels of an MLF unit (level 1 first), cycled beyond three.
LEVEL_COLORS = ("tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple")
_RASTER_BY = ("color", "size")


def _new_axes(figsize: tuple[float, float]) -> Axes:
    import matplotlib.pyplot as plt  # pyplot so that notebooks display the new figure

    return plt.subplots(figsize=figsize, layout="constrained")[1]


def _index(name: str, index: Any, shape: tuple[int, ...], what: str) -> int:
    """Flat (C-order) index into ``shape`` from an int or a tuple of ints."""
    size = math.prod(shape)
    if isinstance(index, (tuple, list)):
        if len(index) != len(shape) or any(
            isinstance(i, bool) or not isinstance(i, (int, np.integer)) for i in index
        ):
            raise ValueError(f"{name} {index!r} must be {len(shape)} integers for {what} {shape}")
        if any(not 0 <= i < n for i, n in zip(index, shape, strict=True)):
            raise ValueError(f"{name} {index!r} is out of range for {what} {shape}")
        return int(np.ravel_multi_index(tuple(int(i) for i in index), shape))
    if isinstance(index, bool) or not isinstance(index, (int, np.integer)):
        raise ValueError(f"{name} must be an integer or a tuple of integers, got {index!r}")
    if not 0 <= index < size:
        raise ValueError(f"{name} {index} is out of range: {what} {shape} has {size} positions")
    return int(index)


# -- spike raster ---------------------------------------------------------------------------


def spike_raster(
    spikes: Any,
    *,
    sample: int | None = None,
    max_neurons: int | None = None,
    by: str = "color",
    marker_size: float = 16.0,
    cmap: str = "viridis",
    ax: Axes | None = None,
) -> Axes:
    """Time x neuron raster: a marker at ``(t, n)`` wherever neuron ``n`` fired at step ``t``.

    MLF neurons emit ``0..K`` spikes per step; the count is shown by the marker's colour
    (``by='color'``, a colour per count, with a legend) or its area (``by='size'``:
    ``marker_size * count``).

    Args:
      spikes: spike counts ``[T, N]``, or ``[T, B, ...]`` as a neuron layer records them
        (:class:`mlf_jax.analysis.LayerRecord`), of which example ``sample`` is drawn,
        its units flattened in C order (``[H, W, C]`` -> ``N = H * W * C``).
      sample: the example of a ``[T, B, ...]`` array (default 0); must be ``None`` for
        ``[T, N]``.
      max_neurons: draw only the first this many neurons.
      by: ``'color'`` or ``'size'``.
      marker_size: marker area in points^2 (per spike with ``by='size'``).
      cmap: colormap of the counts (``by='color'``).
      ax: where to draw (default: a new figure).

    Returns:
      The ``Axes``; the markers are its ``PathCollection`` with ``gid='spikes'``
      (offsets ``(t, n)``; the counts are its array, or its sizes divided by
      ``marker_size``).

    Raises:
      ValueError: for a wrong shape, ``sample`` or ``by``, or counts that are not
        non-negative integers.
    """
    s = np.asarray(spikes)
    if s.ndim < 2 or s.size == 0:
        raise ValueError(f"spikes must be a non-empty [T, N] or [T, B, ...] array, got {s.shape}")
    if s.ndim == 2:
        if sample is not None:
            raise ValueError(
                f"spikes {s.shape} is [T, N] (no batch axis); sample must be None, got {sample!r}"
            )
        counts = s
    else:
        i = _index("sample", 0 if sample is None else sample, s.shape[1:2], "the batch axis of")
        counts = s[:, i].reshape(s.shape[0], -1)
    if by not in _RASTER_BY:
        raise ValueError(f"by must be one of {_RASTER_BY}, got {by!r}")
    if max_neurons is not None:
        if isinstance(max_neurons, bool) or not isinstance(max_neurons, int) or max_neurons < 1:
            raise ValueError(f"max_neurons must be a positive integer or None, got {max_neurons!r}")
        counts = counts[:, :max_neurons]
    counts = counts.astype(np.float64)
    if not np.all(np.isfinite(counts)) or np.any(counts < 0) or np.any(counts != np.round(counts)):
        raise ValueError("spikes must hold non-negative integer spike counts")
    steps, neurons = counts.shape

    ax = _new_axes((8.0, 4.0)) if ax is None else ax
    t, n = np.nonzero(counts)
    c = counts[t, n]
    top = max(float(c.max()) if c.size else 1.0, 1.0)
    if by == "color":
        points = ax.scatter(
            t, n, s=marker_size, c=c, cmap=cmap, vmin=1.0, vmax=top, marker="s", gid="spikes"
        )
        prop: dict[str, Any] = {"prop": "colors"}
    else:
        points = ax.scatter(t, n, s=marker_size * c, color="k", marker="s", gid="spikes")
        prop = {"prop": "sizes", "func": lambda area: area / marker_size}
    if c.size and top > 1:
        handles, labels = points.legend_elements(**prop)
        ax.legend(
            handles, labels, title="spikes", fontsize=8, loc="upper left", bbox_to_anchor=(1, 1)
        )
    ax.set_xlim(-0.5, steps - 0.5)
    ax.set_ylim(-0.5, neurons - 0.5)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("time step $t$")
    ax.set_ylabel("neuron")
    return ax


# -- membrane traces ------------------------------------------------------------------------


def membrane(
    u: Any,
    thresholds: Sequence[float] | None = None,
    surrogate: Surrogate | str | None = None,
    *,
    unit: int | Sequence[int] | None = None,
    mark_spikes: bool = True,
    colors: Sequence[str] = LEVEL_COLORS,
    legend: bool = True,
    ax: Axes | None = None,
) -> Axes:
    """Membrane potential of each level of one unit over time, with its threshold.

    Level ``k`` is a line ``u_k[t]`` against ``t``; its threshold a dashed horizontal
    line in the same colour; with ``surrogate``, the band of potential where the level's
    surrogate derivative can be non-zero (:func:`mlf_jax.analysis.surrogate_windows`) is
    shaded. A unit whose potentials lie outside every band at a step is dormant then.
    Surrogates without compact support (sigmoid, arctan) have no band to shade.

    Args:
      u: per-level potentials ``[T, K]`` of one unit (``[T]``: one level, e.g. LIF), or
        ``[T, K, B, ...]`` as an MLF layer records them, of which unit ``unit`` is drawn;
        or a layer's :class:`mlf_jax.analysis.LayerRecord` (its membranes, and by default
        the thresholds and surrogate of the model it ran: learned ones included).
      thresholds: the K thresholds, level 1 first (default: the record's).
      surrogate: the neuron's surrogate (or its name), to shade the windows; ``None``
        shades nothing (for a record: its model's surrogate is used).
      unit: for ``[T, K, B, ...]``: an index into ``B, ...`` (a tuple of one index per
        axis, or a flat C-order index; default 0); must be ``None`` otherwise.
      mark_spikes: mark the steps where a level fires (``u_k[t] > th_k``) with a star.
      colors: one colour per level (cycled).
      legend: add a legend (the levels and their thresholds).
      ax: where to draw (default: a new figure).

    Returns:
      The ``Axes``. Lines: ``gid='membrane'`` (one per level, in level order, y-data
      ``u_k``), ``gid='threshold'`` (one per level), ``gid='spikes'`` (one per level with
      ``mark_spikes``); shaded windows: ``Rectangle`` patches, ``gid='surrogate_window'``.

    Raises:
      ValueError: for a wrong shape or ``unit``, or a number of levels other than the
        number of thresholds.
    """
    if isinstance(u, LayerRecord):
        if u.model is not None:
            thresholds = u.model.level_thresholds() if thresholds is None else thresholds
            surrogate = getattr(u.model, "surrogate", None) if surrogate is None else surrogate
        u = u.membrane
    if thresholds is None:
        raise ValueError(
            "thresholds are needed: pass them, or a LayerRecord of mj.analysis.record "
            "(which holds the layer's model)"
        )
    a = np.asarray(u, dtype=np.float64)
    th = np.asarray(thresholds, dtype=np.float64)
    if th.ndim != 1 or th.size == 0 or not np.all(np.isfinite(th)):
        raise ValueError(f"thresholds must be a non-empty 1-D sequence of finite numbers, got {th}")
    if a.ndim == 0 or a.shape[0] == 0:
        raise ValueError(f"u must be [T], [T, K] or [T, K, B, ...] with T >= 1, got {a.shape}")
    if a.ndim <= 2:
        if unit is not None:
            raise ValueError(f"u {a.shape} holds one unit; unit must be None, got {unit!r}")
        a = a.reshape(a.shape[0], -1)
    else:
        i = _index("unit", 0 if unit is None else unit, a.shape[2:], "units")
        a = a.reshape(a.shape[0], a.shape[1], -1)[:, :, i]
    if a.shape[1] != th.size:
        raise ValueError(
            f"u has K={a.shape[1]} levels (axis 1) but {th.size} thresholds were given"
        )
    windows = surrogate_windows(th.tolist(), surrogate) if surrogate is not None else []

    ax = _new_axes((8.0, 3.5)) if ax is None else ax
    steps = np.arange(a.shape[0])
    many = th.size > 1
    for k in range(th.size):
        color = colors[k % len(colors)]
        label = f"$u_{{{k + 1}}}$" if many else "$u$"
        width = 1.0 + 2.5 * (th.size - 1 - k) / (th.size - 1) if many else 2.0  # level 1 widest
        # a marker as well as the line: at T = 1 a line has no length and would not show
        marker = "o" if a.shape[0] == 1 else None
        ax.plot(
            steps, a[:, k], "-", marker=marker, color=color, lw=width, label=label, gid="membrane"
        )
        name = f"V_{{th,{k + 1}}}" if many else "V_{th}"
        ax.axhline(
            th[k], color=color, ls="--", lw=1.0, label=f"${name}$ = {th[k]:g}", gid="threshold"
        )
        if windows and all(map(math.isfinite, windows[k])):
            lo, hi = windows[k]
            ax.axhspan(lo, hi, color=color, alpha=0.12, lw=0, gid="surrogate_window")
        if mark_spikes:
            fired = a[:, k] > th[k]
            ax.plot(
                steps[fired], a[fired, k], "*", color=color, mec="k", ms=10, ls="", gid="spikes"
            )
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("time step $t$")
    ax.set_ylabel("membrane potential")
    if legend:
        ax.legend(fontsize=8, loc="best")
    return ax


# -- per-layer activity ---------------------------------------------------------------------


def _series(values: Mapping[str, Any], name: str) -> dict[str | None, dict[str, float]]:
    """``{layer: v}`` -> ``{None: {layer: v}}``; ``{series: {layer: v}}`` kept as is."""
    if not isinstance(values, Mapping) or not values:
        raise ValueError(f"{name} must be a non-empty mapping, got {values!r}")
    nested = [isinstance(v, Mapping) for v in values.values()]
    out: dict[str | None, dict[str, float]]
    if all(nested):
        out = {str(s): dict(v) for s, v in values.items()}
    elif not any(nested):
        out = {None: dict(values)}
    else:
        raise ValueError(f"{name} mixes layer values and per-series mappings: {list(values)}")
    for s, layers in out.items():
        if not layers:
            raise ValueError(f"{name}: series {s!r} has no layers")
        for layer, v in layers.items():
            try:
                ok = not isinstance(v, bool) and np.ndim(v) == 0 and math.isfinite(float(v))
            except (TypeError, ValueError):
                ok = False
            if not ok:
                raise ValueError(f"{name}[{layer!r}] must be a finite number, got {v!r}")
            layers[layer] = float(v)
    return out


def _layer_order(names: Sequence[str]) -> list[str]:
    """Layer paths in forward order (:func:`mlf_jax.analysis.forward_order`)."""
    return ["/".join(p) for p in forward_order([tuple(n.split("/")) for n in names])]


def layer_activity(
    firing_rates: Mapping[str, Any] | None = None,
    dormant_fractions: Mapping[str, Any] | None = None,
    *,
    axes: Axes | Sequence[Axes] | None = None,
    levels: int | None = None,
) -> Figure:
    """Bars per neuron layer, in forward order: firing rate (top) and dormant fraction.

    Args:
      firing_rates: ``{layer: rate}`` (:func:`mlf_jax.analysis.firing_rates`: mean spike
        count per unit and step), or ``{series: {layer: rate}}`` to compare networks
        (bars side by side, a legend naming the series).
      dormant_fractions: the same for :func:`mlf_jax.analysis.dormant_fractions`
        (values in ``[0, 1]``).
      axes: one ``Axes`` per quantity given (firing rate first), or one ``Axes`` when
        only one is given (default: a new figure with one panel per quantity).
      levels: K, to label the rate axis with its maximum (K spikes per step).

    The layers are ordered by :func:`mlf_jax.analysis.forward_order` on their
    ``'/'``-separated paths; a panel shows every layer of any of its series, and a series
    without a layer (another architecture: a DS-ResNet has shortcut neurons where a spiking
    ResNet has none) has no bar there.

    Returns:
      The ``Figure``. Each bar's height is its value; the bars of a series form a
      ``BarContainer`` (``ax.containers``) labelled with the series name, whose patches
      have ``gid='firing_rate'`` or ``'dormant_fraction'``.

    Raises:
      ValueError: if neither is given, for non-finite values, dormant fractions outside
        ``[0, 1]``, negative rates, or a wrong ``axes``.
    """
    panels = []
    if firing_rates is not None:
        panels.append(("firing_rate", _series(firing_rates, "firing_rates")))
    if dormant_fractions is not None:
        panels.append(("dormant_fraction", _series(dormant_fractions, "dormant_fractions")))
    if not panels:
        raise ValueError("give firing_rates, dormant_fractions or both")
    for gid, series in panels:
        for s, layers in series.items():
            bad = {
                k: v for k, v in layers.items() if v < 0 or (gid == "dormant_fraction" and v > 1)
            }
            if bad:
                what = "in [0, 1]" if gid == "dormant_fraction" else ">= 0"
                raise ValueError(f"{gid} values must be {what}; got {bad} (series {s!r})")

    if axes is None:
        import matplotlib.pyplot as plt

        n_layers = max(len({k for v in s.values() for k in v}) for _, s in panels)
        n_series = max(len(s) for _, s in panels)
        width = min(max(8.0, 0.3 * n_layers * max(n_series, 2) + 2.0), 18.0)
        fig, grid = plt.subplots(
            len(panels),
            1,
            figsize=(width, 2.8 * len(panels) + 1.2),
            sharex=True,
            squeeze=False,
            layout="constrained",
        )
        axes_list = list(grid[:, 0])
    else:
        axes_list = [axes] if isinstance(axes, Axes) else list(axes)
        if len(axes_list) != len(panels) or not all(isinstance(a, Axes) for a in axes_list):
            raise ValueError(f"axes must be {len(panels)} matplotlib Axes, got {axes!r}")
        fig = axes_list[0].figure

    for ax, (gid, series) in zip(axes_list, panels, strict=True):
        union = dict.fromkeys(k for values in series.values() for k in values)
        order = _layer_order(list(union))
        pos = np.arange(len(order))
        width = 0.8 / len(series)
        for j, (s, values) in enumerate(series.items()):
            offset = (j - (len(series) - 1) / 2) * width
            where = [i for i, k in enumerate(order) if k in values]
            heights = [float(values[order[i]]) for i in where]
            bars = ax.bar(pos[where] + offset, heights, width, label=s, gid=gid)
            for patch in bars:
                patch.set_gid(gid)
        if gid == "firing_rate":
            top = f" (max {levels})" if levels is not None else ""
            ax.set_ylabel(f"firing rate\n(spikes per unit per step{top})")
        else:
            ax.set_ylabel("dormant fraction")
            ax.set_ylim(0.0, 1.0)
        if len(series) > 1:
            ax.legend(fontsize=8, ncol=2)
        ax.set_xticks(pos, order, rotation=45, ha="right", fontsize=8)
        ax.grid(axis="y", alpha=0.3)
    axes_list[-1].set_xlabel("neuron layer (forward order)")
    return fig


# -- gradient heatmap -----------------------------------------------------------------------


def grad_heatmap(
    norms: Mapping[str, Any],
    *,
    log: bool = True,
    vmin: float | None = None,
    vmax: float | None = None,
    cmap: str = "magma",
    colorbar: bool = True,
    max_labels: int = 40,
    ax: Axes | None = None,
) -> Axes:
    """Heatmap of the gradient reaching each neuron layer at each time step.

    Column ``j`` is the ``j``-th neuron layer in forward order (input on the left, so the
    backward pass runs right to left), row ``t`` is time step ``t``; the colour is
    ``||dL/d spikes[t]||`` of that layer, as :func:`mlf_jax.analysis.activation_grad_norms`
    returns it (``{layer: [T] norms}``). Vanishing gradients show as columns fading
    towards the input.

    Args:
      norms: ``{layer path: [T] array}``, every layer with the same T, values >= 0.
      log: logarithmic colour scale (from the smallest positive norm; zeros are drawn in
        the colormap's "bad" colour). Falls back to linear when no norm is positive.
      vmin: low end of the colour scale (default: the smallest positive norm, or the
        smallest); give the same ``vmin`` and ``vmax`` to several heatmaps to compare them.
      vmax: high end of the colour scale (default: the largest norm).
      cmap: colormap.
      colorbar: add a colorbar to the figure.
      max_labels: label at most this many layers on the x axis (every n-th beyond).
      ax: where to draw (default: a new figure).

    Returns:
      The ``Axes``; the heatmap is its ``AxesImage`` with ``gid='grad_norms'``, whose
      array is ``[T, layers]`` (columns in forward order, the order of its x tick labels).

    Raises:
      ValueError: for an empty mapping, arrays that are not 1-D, differing T, negative or
        non-finite norms, or a colour scale that is empty (``vmin >= vmax``) or not
        positive on a log scale.
    """
    if not isinstance(norms, Mapping) or not norms:
        raise ValueError(
            f"norms must be a non-empty mapping {{layer: [T] norms}}, got {type(norms).__name__}"
        )
    layers = _layer_order([str(k) for k in norms])
    lookup = {str(k): v for k, v in norms.items()}
    rows = []
    for layer in layers:
        v = np.asarray(lookup[layer], dtype=np.float64)
        if v.ndim != 1 or v.size == 0:
            raise ValueError(f"norms[{layer!r}] must be a non-empty 1-D [T] array, got {v.shape}")
        rows.append(v)
    lengths = {layer: r.size for layer, r in zip(layers, rows, strict=True)}
    if len(set(lengths.values())) != 1:
        raise ValueError(f"every layer must have the same number of time steps, got {lengths}")
    image = np.stack(rows, axis=1)  # [T, L]
    if not np.all(np.isfinite(image)) or np.any(image < 0):
        raise ValueError("norms must be finite and >= 0")
    if isinstance(max_labels, bool) or not isinstance(max_labels, int) or max_labels < 1:
        raise ValueError(f"max_labels must be a positive integer, got {max_labels!r}")

    steps, n_layers = image.shape
    if ax is None:
        ax = _new_axes((min(max(6.0, 0.3 * n_layers + 3.0), 18.0), 1.0 + 0.5 * steps + 1.5))
    positive = image[image > 0]
    use_log = bool(log and positive.size)
    lo = float((positive if use_log else image).min()) if vmin is None else float(vmin)
    hi = float((positive if use_log else image).max()) if vmax is None else float(vmax)
    given = vmin is not None or vmax is not None
    if (use_log and not lo > 0) or lo > hi or (given and lo == hi):
        need = "0 < vmin < vmax" if use_log else "vmin < vmax"
        raise ValueError(f"the colour scale needs {need}, got vmin {lo} and vmax {hi}")
    norm = mcolors.LogNorm(vmin=lo, vmax=hi) if use_log else mcolors.Normalize(vmin=lo, vmax=hi)
    colormap = matplotlib.colormaps[cmap].with_extremes(bad="lightgrey")  # zeros on a log scale
    shown = np.ma.masked_less_equal(image, 0.0) if isinstance(norm, mcolors.LogNorm) else image
    im = ax.imshow(
        shown,
        aspect="auto",
        interpolation="nearest",
        cmap=colormap,
        norm=norm,
        origin="upper",
        gid="grad_norms",
    )
    every = -(-n_layers // max_labels)
    ticks = np.arange(0, n_layers, every)
    ax.set_xticks(ticks, [layers[i] for i in ticks], rotation=90, fontsize=7)
    ax.set_yticks(np.arange(steps), [str(t) for t in range(steps)])
    ax.set_xlabel("neuron layer (forward order: input left, output right)")
    ax.set_ylabel("time step $t$")
    if colorbar:
        ax.figure.colorbar(im, ax=ax, label=r"$\|\partial L / \partial\, \mathrm{spikes}[t]\|$")
    return ax
