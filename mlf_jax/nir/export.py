"""A trained :class:`mlf_jax.models.ResNet` in inference mode as a ``nir.NIRGraph``.

* Convolutions and the classifier become NIR's ``Conv2d`` and ``Affine`` with tdBN (its
  running statistics, scale and bias) folded into their weights and biases; the input's
  tdBN without affine parameters (``input_norm``) becomes a 1x1 ``Conv2d`` with a diagonal
  weight.
* An MLF neuron with K levels becomes K ``LIF`` nodes (``IF`` for ``tau = 1``), one per
  threshold, each with its own hard reset, all fed by the same edges: NIR sums the edges
  into a node, so the next node receives the K spike trains summed, the MLF output. This is
  the library's definition of MLF (:func:`mlf_jax.neurons.mlf_step` is one
  :func:`mlf_jax.neurons.lif_step` per level), so it is exact for every T. A LIF (or PLIF)
  neuron is one ``LIF`` node, an IF neuron one ``IF`` node. Time constants:
  :mod:`mlf_jax.nir.timing`.
* Shortcuts are edges: a DS block's output is the sum of its second neuron's spikes and its
  shortcut's (identity: the block's input), so every node fed by the block gets an edge from
  each; a spiking ResNet block's second neuron gets edges from its second convolution and
  from the shortcut.
* Global average pooling is ``AvgPool2d`` over the whole map, then ``Flatten``. The average
  of the logits over the T steps: by default (``readout='per_step'``) the graph's output is
  the classifier's logits at every step and the average is the runner's
  (``graph.metadata['readout']`` is ``'mean_over_time'``, ``'time_steps'`` is T; what
  simulators do with an output layer, and what snnTorch can read); with
  ``readout='integrator'`` it is in the graph, an ``I`` node (``dv/dt = r I``) with
  ``r = 1 / (T dt)`` after the classifier, whose value at step T is the mean
  (``metadata['readout']`` is ``'last_step'``). :func:`mlf_jax.nir.from_nir` applies either.

Whatever NIR cannot express is refused by :class:`NIRExportError` in one line naming the
layer: a neuron model with no NIR counterpart (adaptive threshold, a factory of layers).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import nir
import numpy as np

from mlf_jax import models, zoo
from mlf_jax.models import ResNet
from mlf_jax.nir.timing import DEFAULT_DT, _check_dt, if_to_nir, leak_to_nir

__all__ = ["NIRExportError", "READOUTS", "to_nir", "tdbn_fold", "neuron_nodes"]

#: How the average of the logits over time is written (see :func:`to_nir`).
READOUTS = ("per_step", "integrator")

Nodes = dict[str, nir.NIRNode]
Edges = list[tuple[str, str]]


class NIRExportError(ValueError):
    """A layer that NIR cannot express; the message names it in one line."""


def tdbn_fold(
    kernel: np.ndarray,
    stats: Mapping[str, Any],
    bn: Mapping[str, Any],
    *,
    v_th: float,
    epsilon: float,
) -> tuple[np.ndarray, np.ndarray]:
    """A bias-free convolution followed by tdBN in inference mode, as one convolution.

    tdBN computes ``v_th (y - mean) / (sqrt(var) + epsilon) * scale + bias`` per channel, so
    with ``a = v_th scale / (sqrt(var) + epsilon)`` the pair is the convolution with weight
    ``a * kernel`` and bias ``bias - a * mean``.

    Args:
      kernel: Flax's kernel ``[kh, kw, C_in, C_out]`` (HWIO).
      stats: tdBN's running ``'mean'`` and ``'var'``.
      bn: tdBN's ``'scale'`` and ``'bias'`` (either missing: 1 and 0).
      v_th: tdBN's threshold; epsilon: added to the standard deviation.

    Returns:
      ``(weight, bias)``: NIR's ``[C_out, C_in, kh, kw]`` (OIHW) and ``[C_out]``, float32.
    """
    kernel = np.asarray(kernel, np.float64)
    mean = np.asarray(stats["mean"], np.float64)
    var = np.asarray(stats["var"], np.float64)
    scale = np.asarray(bn.get("scale", 1.0), np.float64)
    a = v_th * scale / (np.sqrt(var) + epsilon)
    weight = np.transpose(kernel * a, (3, 2, 0, 1))
    bias = np.asarray(bn.get("bias", 0.0), np.float64) - a * mean
    return weight.astype(np.float32), np.broadcast_to(bias, a.shape).astype(np.float32)


def _levels(layer: str, model: zoo.NeuronModel) -> tuple[tuple[float, ...], float]:
    """``(thresholds, tau)`` of a neuron model NIR can express: one threshold per level
    (one for LIF, PLIF and IF), the leak (1 for IF).

    Raises:
      NIRExportError: any other model (by its exact type: a subclass has its own
        dynamics), naming ``layer``.
    """
    if type(model) is zoo.MLF:
        return tuple(model.thresholds), float(model.tau)
    if type(model) in (zoo.LIF, zoo.PLIF):
        return (model.threshold,), float(model.tau)  # type: ignore[attr-defined]
    if type(model) is zoo.IF:
        return (model.threshold,), 1.0
    raise NIRExportError(
        f"{layer}: the neuron {type(model).__name__} has no NIR counterpart (NIR has IF, LIF "
        "and CubaLIF; MLF, LIF, PLIF and IF export)"
    )


def neuron_nodes(
    layer: str, model: zoo.NeuronModel, shape: Sequence[int], dt: float = DEFAULT_DT
) -> list[nir.NIRNode]:
    """The NIR nodes of a neuron layer running ``model`` (its learned values already in it:
    :meth:`mlf_jax.zoo.NeuronModel.with_params`) on maps of NIR shape ``shape``: one
    ``LIF`` per MLF level (``IF`` for ``tau = 1``), one ``LIF`` for LIF and PLIF, one ``IF``
    for IF. Each node's metadata names the ``layer`` and its ``level``.

    Raises:
      NIRExportError: a model with no NIR counterpart, naming ``layer``.
    """
    shape = tuple(int(s) for s in shape)
    thresholds, tau = _levels(layer, model)

    def full(value: float) -> np.ndarray:
        return np.full(shape, value, np.float64)

    out: list[nir.NIRNode] = []
    for k, th in enumerate(thresholds):
        meta = {"layer": layer, "level": k, "levels": len(thresholds)}
        if tau == 1.0:
            node: nir.NIRNode = nir.IF(
                r=full(if_to_nir(dt)), v_threshold=full(th), v_reset=full(0.0), metadata=meta
            )
        else:
            tau_nir, r = leak_to_nir(tau, dt)
            node = nir.LIF(
                tau=full(tau_nir),
                r=full(r),
                v_leak=full(0.0),
                v_threshold=full(th),
                v_reset=full(0.0),
                metadata=meta,
            )
        out.append(node)
    return out


class _Builder:
    """Nodes and edges of the graph being written; a tensor is the list of nodes whose
    outputs sum to it (NIR sums the edges into a node)."""

    def __init__(self, net: ResNet, variables: Mapping[str, Any], dt: float):
        self.net, self.dt = net, dt
        self.params = variables.get("params", {})
        self.stats = variables.get("batch_stats", {})
        self.nodes: Nodes = {}
        self.edges: Edges = []
        model = net.neuron_model()
        if model is None:
            raise NIRExportError(
                "neuron: a factory of spiking layers has no NIR counterpart (its dynamics are "
                "its own); export a model whose neuron is an mlf_jax.zoo model"
            )
        self.model = model

    def add(self, name: str, node: nir.NIRNode, sources: Sequence[str]) -> list[str]:
        self.nodes[name] = node
        self.edges.extend((s, name) for s in sources)
        return [name]

    def conv(self, path: tuple[str, ...], bn: str, sources, hw, stride: int) -> list[str]:
        """Convolution ``path`` and tdBN ``bn`` (a sibling) folded; returns the node."""
        *scope, name = path
        params, stats = _scope(self.params, scope), _scope(self.stats, scope)
        kernel = np.asarray(params[name]["kernel"])
        weight, bias = tdbn_fold(
            kernel,
            stats[bn],
            params.get(bn, {}),
            v_th=self.net.tdbn_threshold(),
            epsilon=self.net.bn_epsilon,
        )
        pad = (kernel.shape[0] - 1) // 2
        node = nir.Conv2d(
            input_shape=tuple(hw),
            weight=weight,
            stride=(stride, stride),
            padding=(pad, pad),
            dilation=(1, 1),
            groups=1,
            bias=bias,
        )
        return self.add(".".join(path), node, sources)

    def neuron(self, path: tuple[str, ...], sources, shape) -> list[str]:
        """The neuron layer ``path``: its nodes, each fed by ``sources``."""
        *scope, name = path
        layer = "/".join(path)
        _levels(layer, self.model)  # a model NIR expresses, before its parameters are read
        # the parameters fit: to_nir checked the variables against the net
        model = self.model.with_params(_scope(self.params, scope).get(name, {}))
        out = []
        for k, node in enumerate(neuron_nodes(layer, model, shape, self.dt)):
            out += self.add(f"{'.'.join(path)}.{k}", node, sources)
        return out


def _check_input_shape(input_shape: Sequence[int]) -> tuple[int, int, int]:
    """``(H, W, C)``: three positive integers, else refused naming what was given."""
    shape = tuple(input_shape)
    if len(shape) != 3 or not all(isinstance(v, (int, np.integer)) and v > 0 for v in shape):
        raise NIRExportError(
            "input_shape is one input step (H, W, C) as the model takes it (e.g. "
            f"info['input']['shape'] of mj.models.load), got {shape}"
        )
    h, w, c = (int(v) for v in shape)
    return h, w, c


def _check_variables(net: ResNet, variables: Mapping[str, Any], hwc: tuple[int, int, int]) -> None:
    """``variables`` are ``net``'s (names and shapes, as :func:`mlf_jax.models.save` checks
    them) and take ``hwc``'s channels."""
    given = dict(variables)
    try:
        models.check_variables(net, given, "variables")
    except ValueError as e:
        raise NIRExportError(f"{e}; pass the net's trained {{'params', 'batch_stats'}}") from None
    channels = int(np.shape(given["params"]["stem_conv"]["kernel"])[2])  # [3, 3, C, F]
    if hwc[2] != channels:
        raise NIRExportError(
            f"input_shape {hwc}: the net takes {channels} channels, the last axis of one step "
            "(H, W, C)"
        )


def _scope(tree: Mapping[str, Any], scope: Sequence[str]) -> Mapping[str, Any]:
    for s in scope:
        tree = tree.get(s, {})
    return tree


def _conv_hw(hw: tuple[int, int], kernel: int, stride: int) -> tuple[int, int]:
    """Spatial size after a square convolution with padding ``(kernel - 1) // 2``."""
    pad = (kernel - 1) // 2
    return tuple((n + 2 * pad - kernel) // stride + 1 for n in hw)  # type: ignore[return-value]


def _input_norm(b: _Builder, sources, c: int, hw) -> list[str]:
    """tdBN without affine parameters on the input, as a 1x1 convolution: the identity
    folded with it (:func:`tdbn_fold`), a diagonal weight."""
    identity = np.eye(c)[None, None]  # HWIO [1, 1, C, C]
    weight, bias = tdbn_fold(
        identity, b.stats["input_bn"], {}, v_th=b.net.tdbn_threshold(), epsilon=b.net.bn_epsilon
    )
    node = nir.Conv2d(
        input_shape=tuple(hw),
        weight=weight,
        stride=(1, 1),
        padding=(0, 0),
        dilation=(1, 1),
        groups=1,
        bias=bias,
    )
    return b.add("input_bn", node, sources)


def _block(b: _Builder, name: str, x: list[str], c_in: int, hw, width: int, stride: int):
    """A :class:`mlf_jax.nn.BasicBlock`: its nodes; returns its output's sources and size."""
    out_hw = _conv_hw(hw, 3, stride)
    shape = (width, *out_hw)
    r = b.conv((name, "conv1"), "bn1", x, hw, stride)
    r = b.neuron((name, "neuron1"), r, shape)
    r = b.conv((name, "conv2"), "bn2", r, out_hw, 1)
    if stride != 1 or c_in != width:
        s = b.conv((name, "shortcut_conv"), "shortcut_bn", x, hw, stride)
        if b.net.shortcut == "ds":
            s = b.neuron((name, "shortcut_neuron"), s, shape)
    else:
        s = x
    if b.net.shortcut == "ds":
        return b.neuron((name, "neuron2"), r, shape) + s, out_hw
    return b.neuron((name, "neuron2"), r + s, shape), out_hw


def to_nir(
    net: ResNet,
    variables: Mapping[str, Any],
    *,
    input_shape: Sequence[int],
    dt: float = DEFAULT_DT,
    readout: str = "per_step",
) -> nir.NIRGraph:
    """``net`` with ``variables`` (``{'params', 'batch_stats'}``), in inference mode, as a
    NIR graph (see the module's docs for what each layer becomes).

    Args:
      net: a :class:`mlf_jax.models.ResNet` (DS or spiking ResNet) whose neuron is MLF,
        LIF, PLIF or IF (learned leak and thresholds are read from ``variables``).
      variables: its trained variables.
      input_shape: one input step ``(H, W, C)``, the layout the model takes (e.g.
        ``info['input']['shape']`` of :func:`mlf_jax.models.load`); NIR's is ``(C, H, W)``.
      dt: the step in seconds that NIR's time constants are written for
        (:mod:`mlf_jax.nir.timing`; default :data:`~mlf_jax.nir.timing.DEFAULT_DT`,
        the step snnTorch's importer assumes); recorded in ``graph.metadata['dt']``.
      readout: the average over time left to the runner (``'per_step'``) or written as an
        integrator node (``'integrator'``), see the module's docs.

    Returns:
      A type-checked ``nir.NIRGraph`` from ``'input'`` (``[C, H, W]`` per step) to
      ``'output'`` (the logits at each step, or their running mean for
      ``readout='integrator'``).

    Raises:
      NIRExportError: a layer NIR cannot express, named in one line; an ``input_shape``
        that is not one step ``(H, W, C)`` of the net's input, or ``variables`` that are
        not the net's (what is missing or of another shape named).
      TypeError: ``net`` is not a ResNet.
    """
    if not isinstance(net, ResNet):
        raise TypeError(f"to_nir exports an mlf_jax.models.ResNet, got {type(net).__name__}")
    if readout not in READOUTS:
        raise ValueError(f"unknown readout {readout!r}; expected one of {READOUTS}")
    h, w, c = _check_input_shape(input_shape)
    dt = _check_dt(dt)
    b = _Builder(net, variables, dt)
    _check_variables(net, variables, (h, w, c))
    x = b.add("input", nir.Input(np.array([c, h, w])), [])
    hw = (h, w)
    if net.input_norm:
        x = _input_norm(b, x, c, hw)
    width = net.widths[0]
    x = b.conv(("stem_conv",), "stem_bn", x, hw, 1)
    x = b.neuron(("stem_neuron",), x, (width, *hw))
    c = width
    for i, (n, width) in enumerate(zip(net.stage_sizes, net.widths, strict=True)):
        for j in range(n):
            stride = 2 if i > 0 and j == 0 else 1
            x, hw = _block(b, f"stage{i + 1}_block{j + 1}", x, c, hw, width, stride)
            c = width
    x = b.add(
        "pool",
        nir.AvgPool2d(kernel_size=np.array(hw), stride=np.array(hw), padding=np.array([0, 0])),
        x,
    )
    x = b.add("flatten", nir.Flatten(np.array([c, 1, 1]), start_dim=0, end_dim=-1), x)
    head = b.params["head"]
    x = b.add(
        "head",
        nir.Affine(
            weight=np.asarray(head["kernel"], np.float32).T.copy(),
            bias=np.asarray(head["bias"], np.float32),
        ),
        x,
    )
    if readout == "integrator":
        # an integrator adding 1/T of its input per step (if_to_nir adds it once)
        r = np.full(net.num_classes, if_to_nir(dt) / net.time_steps)
        x = b.add("readout", nir.I(r=r), x)
    b.add("output", nir.Output(np.array([net.num_classes])), x)
    metadata = {
        "exported_by": "mlf_jax",
        "dt": float(dt),
        "time_steps": int(net.time_steps),
        "readout": "mean_over_time" if readout == "per_step" else "last_step",
        "input_layout": "NHWC",
        "encoder": net.encoder,
        "shortcut": net.shortcut,
    }
    return nir.NIRGraph(nodes=b.nodes, edges=b.edges, metadata=metadata)
