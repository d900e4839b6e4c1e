"""A ``nir.NIRGraph`` as a runnable Flax Linen model, :class:`NIRModel`.

The graph is read once (:func:`from_nir`) into a static description and the weights; the
model runs it node by node in topological order on time-major input ``[T, B, ...]``, each
node over all T steps at once. Edges into a node are summed. The nodes:

* ``Conv2d``, ``Affine``, ``Linear``, ``Scale``, ``AvgPool2d``, ``SumPool2d`` and
  ``Flatten``: at every step (``Flatten``'s dims count from the first axis of one sample,
  NIR's convention).
* ``LIF`` and ``IF``: the library's :func:`mlf_jax.neurons.lif` with the leak factor and
  input gain of :mod:`mlf_jax.nir.timing` (``v_leak`` as a constant input
  ``(dt / tau) v_leak`` per step). ``LIF`` (or ``IF``) nodes fed by the same edges, feeding
  the same nodes, with one threshold each and otherwise the same settings, are one MLF
  neuron (what :func:`mlf_jax.nir.to_nir` writes): they run as
  :func:`mlf_jax.neurons.mlf` with their thresholds as the levels.
* ``CubaLIF``: its synaptic current ``I[t] = (1 - dt/tau_syn) I[t-1] + (dt/tau_syn) w_in
  S[t]`` (a leaky integrator: :func:`mlf_jax.neurons.lif` that never fires), then a LIF
  with ``tau_mem``, ``r`` and ``v_leak`` as above (snnTorch's reading).
* ``I`` (integrator) and ``LI`` (leaky integrator): their potential, likewise.

A node with no counterpart here (``Delay``, ``Conv1d``, a nested graph, a cycle), a
``v_reset`` other than 0 or a leak that differs between units is refused by
:class:`NIRImportError` in one line naming the node.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import operator
from collections.abc import Mapping
from typing import Any, cast

import jax
import jax.numpy as jnp
import nir
import numpy as np
from flax import linen as nn
from jax import lax

from mlf_jax import neurons
from mlf_jax.nir.timing import DEFAULT_DT, _check_dt, if_from_nir, leak_from_nir

__all__ = ["NIRImportError", "NodeSpec", "GraphSpec", "NIRModel", "from_nir"]

Array = jax.Array


class NIRImportError(ValueError):
    """A node of a NIR graph with no counterpart here; the message names it in one line."""


@dataclasses.dataclass(frozen=True)
class NodeSpec:
    """One step of the run: ``kind`` on the sum of the ``inputs``' outputs.

    ``names`` are the NIR nodes it stands for (several for an MLF group, whose output is
    their spikes summed, known by the first name), ``key`` its
    parameters' name in the model's variables, ``settings`` its static settings.
    """

    names: tuple[str, ...]
    kind: str
    key: str
    inputs: tuple[str, ...]
    settings: tuple[tuple[str, Any], ...] = ()
    layer: str = ""

    def get(self, name: str, default: Any = None) -> Any:
        return dict(self.settings).get(name, default)


@dataclasses.dataclass(frozen=True)
class GraphSpec:
    """The graph as :class:`NIRModel` runs it: the steps in order, the output node, the input
    shape of one sample (NIR's layout), how the output is read out, and for a graph written
    by :func:`mlf_jax.nir.to_nir` its T, input layout and encoder (its metadata)."""

    steps: tuple[NodeSpec, ...]
    output: str
    input_shape: tuple[int, ...]
    readout: str = "per_step"
    time_steps: int | None = None
    channels_last: bool = False
    encoder: str = "direct"


#: How the output node's value is read (``graph.metadata['readout']``): every step
#: (``'per_step'``, when the graph does not say), its mean over time, or its last step.
_READOUTS = ("per_step", "mean_over_time", "last_step")


_NEURONS = ("lif", "mlf", "cubalif", "integrator")


class NIRModel(nn.Module):
    """A NIR graph (from :func:`from_nir`) as a Linen model.

    Input: ``[T, B, *shape]`` with ``shape`` the graph's input in NIR's layout
    (``(C, H, W)`` for images); with ``spec.channels_last`` (graphs written by
    :func:`mlf_jax.nir.to_nir`) images as the library's models take them,
    ``[T, B, H, W, C]``, or static ``[B, H, W, C]`` repeated ``spec.time_steps`` times.
    Output: the output node's value ``[T, B, ...]``; averaged over time when
    ``spec.readout`` is ``'mean_over_time'``, at the last step when it is ``'last_step'``.
    Refused (as the original ResNet refuses them): input that is not floating (raw
    pixels), static images when ``spec.encoder`` is not ``'direct'``, and for
    ``'last_step'`` a T other than ``spec.time_steps``.
    """

    spec: GraphSpec

    @nn.compact
    def __call__(self, x: Array, return_spikes: bool = False) -> Any:
        """The output, and with ``return_spikes`` also ``{layer: spikes [T, B, ...]}`` for
        every neuron step (an MLF group's summed spikes; NIR's layout)."""
        spec = self.spec
        x = _time_major(jnp.asarray(x), spec)
        values: dict[str, Array] = {}
        spikes: dict[str, Array] = {}
        for step in spec.steps:
            if step.kind == "input":
                out = x
            else:
                inp = functools.reduce(operator.add, (values[s] for s in step.inputs))
                shapes = step.get("params", ())
                params = _Arrays(shapes, name=step.key)() if shapes else {}
                out = _run(step, inp, params)
            values[step.names[0]] = out
            if return_spikes and step.kind in ("lif", "mlf", "cubalif"):
                layer = step.layer or step.names[0]  # a layer's nodes summed, as its levels
                spikes[layer] = spikes[layer] + out if layer in spikes else out
        y = values[spec.output]
        if spec.readout == "mean_over_time":
            y = y.mean(axis=0)
        elif spec.readout == "last_step":
            y = y[-1]
        return (y, spikes) if return_spikes else y


class _Arrays(nn.Module):
    """A step's arrays as parameters of its own scope (named after its node)."""

    shapes: tuple[tuple[str, tuple[int, ...]], ...]

    @nn.compact
    def __call__(self) -> dict[str, Array]:
        return {k: self.param(k, nn.initializers.zeros, s, jnp.float32) for k, s in self.shapes}


def _time_major(x: Array, spec: GraphSpec) -> Array:
    """The input as ``[T, B, *input_shape]`` (see :class:`NIRModel`); refused where the
    graph would run it wrongly: not floating (raw pixels), static images for a model that
    encodes them otherwise than by repeating them, another T for an integrator readout."""
    if not jnp.issubdtype(x.dtype, jnp.floating):
        raise TypeError(
            f"NIRModel expects floating input, got dtype {x.dtype}: preprocess raw pixels as "
            "the model was trained on them (mj.models.preprocess), cast spike trains to float"
        )
    rank = len(spec.input_shape)
    if spec.channels_last and rank == 3:
        if x.ndim == 4:
            if spec.encoder != "direct":
                raise ValueError(
                    f"the graph's model encodes images by {spec.encoder!r}, not by repeating "
                    f"them: encode them first (mj.encoders.{spec.encoder}) and pass the steps "
                    "[T, B, H, W, C]"
                )
            if spec.time_steps is None:
                raise ValueError("static input [B, H, W, C] needs the graph's time_steps")
            x = jnp.broadcast_to(x, (spec.time_steps, *x.shape))
        if x.ndim != 5:
            raise ValueError(f"expected [T, B, H, W, C] or [B, H, W, C], got shape {x.shape}")
        x = jnp.moveaxis(x, -1, 2)
    if x.shape[2:] != spec.input_shape:
        raise ValueError(
            f"expected input [T, B, {', '.join(map(str, spec.input_shape))}] (NIR's layout), "
            f"got shape {x.shape}"
        )
    if spec.readout == "last_step" and spec.time_steps not in (None, x.shape[0]):
        raise ValueError(
            f"the graph's readout is its integrator at step T={spec.time_steps} (the mean "
            f"over {spec.time_steps} steps), got {x.shape[0]} steps"
        )
    return x.astype(jnp.float32)


def _per_sample(fn, x: Array) -> Array:
    """``fn`` on ``[N, *sample]`` with T and B folded into N."""
    t, b = x.shape[:2]
    y = fn(x.reshape(t * b, *x.shape[2:]))
    return y.reshape(t, b, *y.shape[1:])


def _pool(x: Array, step: NodeSpec, average: bool) -> Array:
    k, s, p = (tuple(step.get(n)) for n in ("kernel_size", "stride", "padding"))
    pads = ((0, 0), (0, 0), *((q, q) for q in p))
    y = lax.reduce_window(x, 0.0, lax.add, (1, 1, *k), (1, 1, *s), pads)
    return y / math.prod(k) if average else y


def _run(step: NodeSpec, x: Array, p: Mapping[str, Array]) -> Array:
    """One node's output ``[T, B, ...]`` for its summed input ``x``."""
    kind = step.kind
    if kind == "output":
        return x
    if kind == "conv":

        def conv(v):
            pad = step.get("padding")
            y = lax.conv_general_dilated(
                v,
                p["weight"],
                window_strides=step.get("stride"),
                padding=pad if isinstance(pad, str) else tuple((q, q) for q in pad),
                rhs_dilation=step.get("dilation"),
                feature_group_count=step.get("groups"),
                dimension_numbers=("NCHW", "OIHW", "NCHW"),
            )
            return y + p["bias"][:, None, None]

        return _per_sample(conv, x)
    if kind in ("affine", "linear"):
        y = x @ p["weight"].T
        return y + p["bias"] if kind == "affine" else y
    if kind == "scale":
        return x * p["scale"]
    if kind in ("avgpool", "sumpool"):
        return _per_sample(lambda v: _pool(v, step, kind == "avgpool"), x)
    if kind == "flatten":
        shape = x.shape[2:]
        start, end = (d % len(shape) for d in (step.get("start_dim"), step.get("end_dim")))
        merged = math.prod(shape[start : end + 1])
        return x.reshape(*x.shape[:2], *shape[:start], merged, *shape[end + 1 :])
    drive = x * p["gain"] + p["drive"]
    if kind == "cubalif":
        current = _potential(x * p["w_in"], step.get("alpha"))
        drive = current * p["gain"] + p["drive"]
    if kind == "integrator":
        return _potential(drive, step.get("leak"))
    if kind in ("lif", "cubalif"):
        return cast(Array, neurons.lif(drive, threshold=p["threshold"], tau=step.get("leak")))
    if kind == "mlf":
        return cast(Array, neurons.mlf(drive, thresholds=p["thresholds"], tau=step.get("leak")))
    raise AssertionError(kind)


def _potential(x: Array, leak: float) -> Array:
    """``v[t] = leak v[t-1] + x[t]``: the potential of :func:`mlf_jax.neurons.lif` that
    never fires."""
    _, v = neurons.lif(x, threshold=jnp.inf, tau=leak, return_potential=True)
    return v


# ---------------------------------------------------------------------------
# reading the graph
# ---------------------------------------------------------------------------


def _uniform(name: str, what: str, value: Any) -> float:
    """The one value of an array that is the same for every unit, else refused."""
    a = np.asarray(value, np.float64)
    if a.size == 0 or not np.all(a == a.flat[0]):
        raise NIRImportError(
            f"node {name!r}: its {what} differs between units, which the library's neurons "
            "take as one number per layer"
        )
    return float(a.flat[0])


def _no_reset_offset(name: str, node: Any) -> None:
    v_reset = getattr(node, "v_reset", None)
    if v_reset is not None and np.any(np.asarray(v_reset) != 0):
        raise NIRImportError(
            f"node {name!r}: v_reset other than 0 has no counterpart (the library's neurons "
            "reset to 0)"
        )


def _leak(name: str, tau_nir: Any, r: Any, dt: float) -> tuple[np.ndarray, np.ndarray]:
    """:func:`mlf_jax.nir.timing.leak_from_nir`, its refusal naming the node."""
    try:
        return leak_from_nir(tau_nir, r, dt)
    except ValueError as e:
        raise NIRImportError(f"node {name!r}: {e}") from None


def _neuron(name: str, node: Any, dt: float) -> tuple[str, dict, dict]:
    """``(kind, settings, arrays)`` of a neuron node."""
    f32 = functools.partial(np.asarray, dtype=np.float32)
    if isinstance(node, nir.IF):
        _no_reset_offset(name, node)
        gain = if_from_nir(node.r, dt)
        arrays = {"threshold": f32(node.v_threshold), "gain": f32(gain), "drive": 0 * f32(gain)}
        return "lif", {"leak": 1.0}, arrays
    if isinstance(node, (nir.LIF, nir.LI)):
        if isinstance(node, nir.LIF):
            _no_reset_offset(name, node)
        leak, gain = _leak(name, node.tau, node.r, dt)
        drive = (1.0 - leak) * np.asarray(node.v_leak, np.float64)
        arrays = {"gain": f32(gain), "drive": f32(drive)}
        settings = {"leak": _uniform(name, "time constant tau", leak)}
        if isinstance(node, nir.LI):
            return "integrator", settings, arrays
        return "lif", settings, {"threshold": f32(node.v_threshold), **arrays}
    if isinstance(node, nir.I):
        gain = if_from_nir(node.r, dt)
        return "integrator", {"leak": 1.0}, {"gain": f32(gain), "drive": 0 * f32(gain)}
    if isinstance(node, nir.CubaLIF):
        _no_reset_offset(name, node)
        alpha, w_scale = _leak(name, node.tau_syn, np.ones_like(node.tau_syn), dt)
        leak, gain = _leak(name, node.tau_mem, node.r, dt)
        settings = {
            "alpha": _uniform(name, "synaptic time constant tau_syn", alpha),
            "leak": _uniform(name, "membrane time constant tau_mem", leak),
        }
        arrays = {
            "w_in": f32(w_scale * np.asarray(node.w_in, np.float64)),
            "gain": f32(gain),
            "drive": f32((1.0 - leak) * np.asarray(node.v_leak, np.float64)),
            "threshold": f32(node.v_threshold),
        }
        return "cubalif", settings, arrays
    raise AssertionError(type(node))


def _layer_op(name: str, node: Any) -> tuple[str, dict, dict]:
    """``(kind, settings, arrays)`` of a node that is not a neuron."""
    f32 = functools.partial(np.asarray, dtype=np.float32)
    if isinstance(node, nir.Conv2d):
        pad = node.padding
        padding = str(pad).upper() if isinstance(pad, str) else tuple(int(q) for q in pad)
        bias = node.bias if node.bias is not None else np.zeros(node.weight.shape[0])
        settings = {
            "stride": tuple(int(v) for v in np.broadcast_to(node.stride, (2,))),
            "padding": padding,
            "dilation": tuple(int(v) for v in np.broadcast_to(node.dilation, (2,))),
            "groups": int(node.groups),
        }
        return "conv", settings, {"weight": f32(node.weight), "bias": f32(bias)}
    if isinstance(node, nir.Affine):
        return "affine", {}, {"weight": f32(node.weight), "bias": f32(node.bias)}
    if isinstance(node, nir.Linear):
        return "linear", {}, {"weight": f32(node.weight)}
    if isinstance(node, nir.Scale):
        return "scale", {}, {"scale": f32(node.scale)}
    if isinstance(node, (nir.AvgPool2d, nir.SumPool2d)):
        settings = {
            n: tuple(int(v) for v in np.broadcast_to(getattr(node, n), (2,)))
            for n in ("kernel_size", "stride", "padding")
        }
        return ("avgpool" if isinstance(node, nir.AvgPool2d) else "sumpool"), settings, {}
    if isinstance(node, nir.Flatten):
        return "flatten", {"start_dim": int(node.start_dim), "end_dim": int(node.end_dim)}, {}
    if isinstance(node, nir.Output):
        return "output", {}, {}
    what = (
        "a nested graph (NIR's form of a recurrent layer)"
        if isinstance(node, nir.NIRGraph)
        else type(node).__name__
    )
    raise NIRImportError(f"node {name!r}: {what} has no mlf_jax counterpart")


def _order(graph: nir.NIRGraph) -> list[str]:
    """The nodes in topological order; a cycle (recurrence) is refused."""
    preds = {n: {a for a, b in graph.edges if b == n} for n in graph.nodes}
    order: list[str] = []
    done: set[str] = set()
    todo = sorted(graph.nodes)
    while todo:
        ready = [n for n in todo if preds[n] <= done]
        if not ready:
            raise NIRImportError(
                f"nodes {', '.join(map(repr, todo[:4]))}: a cycle (recurrent edges) has no "
                "mlf_jax counterpart (the models are feed-forward)"
            )
        order += ready
        done |= set(ready)
        todo = [n for n in todo if n not in done]
    return order


def _key(name: str, taken: set[str]) -> str:
    """The scope of a node's parameters: its name, ``.`` and ``/`` made ``_``, numbered where
    another node's name made it already (``a.b`` and ``a_b``); added to ``taken``."""
    base = key = name.replace(".", "_").replace("/", "_")
    n = 1
    while key in taken:
        key, n = f"{base}_{n}", n + 1
    taken.add(key)
    return key


def _meta_str(value: Any) -> Any:
    return value.decode() if isinstance(value, bytes) else value


def _threshold(arrays: Mapping[str, Any]) -> float:
    """The threshold of a LIF/IF node whose units share it."""
    return float(np.asarray(arrays["threshold"]).flat[0])


def _mlf_groups(
    graph: nir.NIRGraph, found: dict[str, tuple[str, dict, dict]]
) -> dict[str, tuple[str, ...]]:
    """``{first node: its group}`` for the LIF/IF nodes that make one MLF neuron: same
    inputs, same consumers, same leak, gain and drive, one threshold each, all different."""
    preds = {n: frozenset(a for a, b in graph.edges if b == n) for n in graph.nodes}
    succs = {n: frozenset(b for a, b in graph.edges if a == n) for n in graph.nodes}
    buckets: dict[Any, list[str]] = {}
    for name, (kind, settings, arrays) in found.items():
        if kind != "lif":
            continue
        try:
            uniform = {k: _uniform(name, k, arrays[k]) for k in ("threshold", "gain", "drive")}
        except NIRImportError:
            continue
        sig = (preds[name], succs[name], settings["leak"], uniform["gain"], uniform["drive"])
        buckets.setdefault(sig, []).append(name)
    groups = {}
    for names in buckets.values():
        ths = [_threshold(found[n][2]) for n in names]
        if len(names) > 1 and len(set(ths)) == len(ths):
            ordered = tuple(n for _, n in sorted(zip(ths, names, strict=True)))
            groups[ordered[0]] = ordered
    return groups


def _steps(
    graph: nir.NIRGraph, found: dict[str, tuple[str, dict, dict]], input_name: str
) -> tuple[tuple[NodeSpec, ...], dict[str, dict[str, Array]]]:
    """The steps of the run in topological order (an MLF group as one step, known by its
    first level) and their parameters by scope."""
    groups = _mlf_groups(graph, found)
    # an MLF group's output is its levels' spikes summed: a consumer takes it once
    rep = {n: g[0] for g in groups.values() for n in g}
    preds = {
        n: tuple(sorted({rep.get(a, a) for a, b in graph.edges if b == n})) for n in graph.nodes
    }
    steps, params = [], {}
    taken: set[str] = set()
    for name in _order(graph):
        if name == input_name:
            steps.append(NodeSpec((name,), "input", _key(name, taken), ()))
            continue
        if rep.get(name, name) != name:  # a level of a group, run with its first
            continue
        kind, settings, arrays = found[name]
        names = groups.get(name, (name,))
        if len(names) > 1:
            kind = "mlf"
            arrays = {
                "thresholds": np.asarray([_threshold(found[n][2]) for n in names], np.float32),
                **{k: np.float32(np.asarray(arrays[k]).flat[0]) for k in ("gain", "drive")},
            }
        key = _key(name, taken)
        if arrays:
            params[key] = {k: jnp.asarray(v) for k, v in arrays.items()}
        settings = {**settings, "params": tuple((k, np.shape(v)) for k, v in arrays.items())}
        layer = _meta_str(graph.nodes[name].metadata.get("layer", ""))
        spec = NodeSpec(names, kind, key, preds[name], tuple(sorted(settings.items())), layer)
        steps.append(spec)
    return tuple(steps), params


def from_nir(
    graph: nir.NIRGraph,
    *,
    dt: float | None = None,
    channels_last: bool | None = None,
    time_steps: int | None = None,
) -> tuple[NIRModel, dict[str, Any]]:
    """A NIR graph as ``(model, variables)``: ``model.apply(variables, x)`` runs it.

    Args:
      graph: a graph of the nodes this module reads (see its docs), one ``Input`` and one
        ``Output``.
      dt: the step its time constants are stepped with (default: ``graph.metadata['dt']``,
        else :data:`mlf_jax.nir.timing.DEFAULT_DT`).
      channels_last: take images as ``[T, B, H, W, C]`` (default: when the graph was written
        by :func:`mlf_jax.nir.to_nir`, its ``metadata['input_layout']``).
      time_steps: T for static input (default: ``graph.metadata['time_steps']``).

    Raises:
      NIRImportError: a node with no counterpart here, named in one line.
    """
    if not isinstance(graph, nir.NIRGraph):
        raise TypeError(
            "from_nir reads a nir.NIRGraph (from a file: from_nir(nir.read(path))), got "
            f"{type(graph).__name__}"
        )
    meta = {k: _meta_str(v) for k, v in (graph.metadata or {}).items()}
    dt = _check_dt(meta.get("dt", DEFAULT_DT) if dt is None else dt)
    readout = str(meta.get("readout", "per_step"))
    if readout not in _READOUTS:
        raise NIRImportError(
            f"graph: metadata readout {readout!r} is not one of {_READOUTS} (how the output "
            "is read over time)"
        )
    inputs = [n for n, v in graph.nodes.items() if isinstance(v, nir.Input)]
    outputs = [n for n, v in graph.nodes.items() if isinstance(v, nir.Output)]
    if len(inputs) != 1 or len(outputs) != 1:
        raise NIRImportError(
            f"graph: one Input and one Output node are read, got Input {inputs} and Output "
            f"{outputs} (nir adds one to a node with no edges in or out)"
        )
    found: dict[str, tuple[str, dict, dict]] = {}
    for name, node in graph.nodes.items():
        if isinstance(node, (nir.LIF, nir.IF, nir.LI, nir.I, nir.CubaLIF)):
            found[name] = _neuron(name, node, dt)
        elif not isinstance(node, nir.Input):
            found[name] = _layer_op(name, node)
    steps, params = _steps(graph, found, inputs[0])
    if time_steps is None and "time_steps" in meta:
        time_steps = int(meta["time_steps"])
    if channels_last is None:
        channels_last = meta.get("input_layout") == "NHWC"
    spec = GraphSpec(
        steps=steps,
        output=outputs[0],
        input_shape=tuple(int(v) for v in graph.nodes[inputs[0]].input_type["input"]),
        readout=readout,
        time_steps=time_steps,
        channels_last=channels_last,
        encoder=str(meta.get("encoder", "direct")),
    )
    return NIRModel(spec), {"params": params} if params else {}
