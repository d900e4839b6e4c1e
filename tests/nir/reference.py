"""A small, slow NumPy interpreter of NIR graphs, written from NIR's definitions alone (no
mlf_jax): the independent reference the NIR tests hold the library's export and import to.

It runs one time step at a time, as a simulator would: every node's input is the sum of the
edges into it; the continuous neurons are stepped by forward Euler with ``dt``
(``v += dt / tau (v_leak - v + r I)``), fire when ``v > v_threshold`` and are then set to
``v_reset``. Arrays are float64; images are ``[B, C, H, W]`` per step."""

from __future__ import annotations

import nir
import numpy as np


def _pairs(v) -> tuple[int, int]:
    a = np.broadcast_to(np.asarray(v), (2,))
    return int(a[0]), int(a[1])


def conv2d(x: np.ndarray, node: nir.Conv2d) -> np.ndarray:
    """``x`` ``[B, C, H, W]`` convolved as ``torch.nn.Conv2d`` would (groups 1)."""
    assert node.groups == 1 and _pairs(node.dilation) == (1, 1)
    (ph, pw), (sh, sw) = _pairs(node.padding), _pairs(node.stride)
    xp = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    w = np.asarray(node.weight, np.float64)
    kh, kw = w.shape[2:]
    windows = np.lib.stride_tricks.sliding_window_view(xp, (kh, kw), axis=(2, 3))
    windows = windows[:, :, ::sh, ::sw]  # [B, C, H', W', kh, kw]
    y = np.einsum("bchwij,ocij->bohw", windows, w)
    return y + np.asarray(node.bias, np.float64)[None, :, None, None]


def pool2d(x: np.ndarray, node, average: bool) -> np.ndarray:
    (kh, kw), (sh, sw), (ph, pw) = (
        _pairs(v) for v in (node.kernel_size, node.stride, node.padding)
    )
    xp = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    windows = np.lib.stride_tricks.sliding_window_view(xp, (kh, kw), axis=(2, 3))[:, :, ::sh, ::sw]
    y = windows.sum(axis=(-2, -1))
    return y / (kh * kw) if average else y


def flatten(x: np.ndarray, node: nir.Flatten) -> np.ndarray:
    """NIR's Flatten: dims count from the first axis of one sample (the batch excluded)."""
    shape = x.shape[1:]
    start, end = node.start_dim % len(shape), node.end_dim % len(shape)
    return x.reshape(x.shape[0], *shape[:start], -1, *shape[end + 1 :])


def order(graph: nir.NIRGraph) -> list[str]:
    done: list[str] = []
    while len(done) < len(graph.nodes):
        for n in sorted(graph.nodes):
            if n not in done and all(a in done for a, b in graph.edges if b == n):
                done.append(n)
    return done


def run(graph: nir.NIRGraph, x: np.ndarray, dt: float) -> tuple[np.ndarray, dict]:
    """The output node's value at each step ``[T, B, ...]`` for ``x`` ``[T, B, *input]``,
    and every node's output at each step (``{name: [T, B, ...]}``)."""
    steps = order(graph)
    preds = {n: [a for a, b in graph.edges if b == n] for n in graph.nodes}
    v: dict[str, np.ndarray] = {}
    syn: dict[str, np.ndarray] = {}
    trace: dict[str, list] = {n: [] for n in graph.nodes}
    for t in range(x.shape[0]):
        out: dict[str, np.ndarray] = {}
        for n in steps:
            node = graph.nodes[n]
            if isinstance(node, nir.Input):
                y = np.asarray(x[t], np.float64)
            else:
                i = sum(out[p] for p in preds[n])
                y = _node(n, node, i, v, syn, dt)
            out[n] = y
            trace[n].append(y)
    traces = {n: np.stack(s) for n, s in trace.items()}
    output = [n for n, node in graph.nodes.items() if isinstance(node, nir.Output)][0]
    return traces[output], traces


def _node(n, node, i, v, syn, dt):
    if isinstance(node, nir.Output):
        return i
    if isinstance(node, nir.Conv2d):
        return conv2d(i, node)
    if isinstance(node, nir.Affine):
        return i @ np.asarray(node.weight, np.float64).T + node.bias
    if isinstance(node, nir.Linear):
        return i @ np.asarray(node.weight, np.float64).T
    if isinstance(node, nir.Scale):
        return i * node.scale
    if isinstance(node, nir.AvgPool2d):
        return pool2d(i, node, True)
    if isinstance(node, nir.SumPool2d):
        return pool2d(i, node, False)
    if isinstance(node, nir.Flatten):
        return flatten(i, node)
    u = v.get(n, np.zeros_like(i))
    if isinstance(node, nir.IF):
        u = u + dt * node.r * i
    elif isinstance(node, (nir.LIF, nir.LI)):
        u = u + dt / node.tau * (node.v_leak - u + node.r * i)
    elif isinstance(node, nir.I):
        u = u + dt * node.r * i
    elif isinstance(node, nir.CubaLIF):
        s = syn.get(n, np.zeros_like(i))
        s = s + dt / node.tau_syn * (-s + node.w_in * i)
        syn[n] = s
        u = u + dt / node.tau_mem * (node.v_leak - u + node.r * s)
    else:
        raise NotImplementedError(type(node).__name__)
    if isinstance(node, (nir.LI, nir.I)):
        v[n] = u
        return u
    z = (u > node.v_threshold).astype(np.float64)
    v[n] = np.where(z > 0, node.v_reset, u)
    return z
