"""Runs a NIR graph with snnTorch's importer: the other framework of the NIR cross-check.

    python -P experiments/nir_peer.py GRAPH.nir INPUTS.npz OUT.npz [--batch 500]
        [--spikes-for N]

Runs in its own virtualenv (torch, snnTorch, nir, nirtorch; no mlf_jax, no JAX), created
by ``make test-nir-peer``. ``INPUTS.npz`` holds ``x``, time-major ``[T, B, C, H, W]`` in
NIR's layout. ``OUT.npz`` gets ``output`` (the graph's output at every step,
``[T, B, ...]``) and, for each neuron layer named in its nodes' metadata (``'layer'``, as
:func:`mlf_jax.nir.to_nir` writes), ``spikes/<layer>``: the spikes of the layer's nodes
summed (an MLF neuron's K levels), ``[T, N, C, H, W]`` for the first ``N`` samples
(``--spikes-for``, default all), read by forward hooks.

snnTorch reads NIR as documented in the guide, *Export to NIR*: every LIF as
``snn.Leaky(beta = 1 - dt / tau, reset_mechanism='zero', reset_delay=False)`` with ``dt``
fixed at 1e-4 s (so the graph must be written with ``dt=1e-4``), the same reset and firing
rule as the library's. One reading differs, and this script undoes it: NIR counts
``Flatten``'s ``start_dim`` and ``end_dim`` from the first axis of one sample (snnTorch's
exporter subtracts one from torch's), but snnTorch's importer hands them to
``torch.nn.Flatten`` unchanged, where axis 0 is the batch; the script adds one to each
non-negative dim before importing (``--no-flatten-fix`` shows what happens without).
"""

from __future__ import annotations

import argparse
import collections

import nir
import numpy as np
import snntorch as snn
import torch
from snntorch.import_nir import import_from_nir


def fix_flatten(graph: nir.NIRGraph) -> None:
    """NIR's ``Flatten`` dims (one sample) as torch's (the batch first), in place."""
    for node in graph.nodes.values():
        if isinstance(node, nir.Flatten):
            node.start_dim = node.start_dim + 1 if node.start_dim >= 0 else node.start_dim
            node.end_dim = node.end_dim + 1 if node.end_dim >= 0 else node.end_dim


def layers(graph: nir.NIRGraph) -> dict[str, list[str]]:
    """``{layer: [node, ...]}`` from the nodes' metadata (torch's names: ``.`` as ``_``)."""
    out = collections.defaultdict(list)
    for name, node in graph.nodes.items():
        layer = node.metadata.get("layer") if node.metadata else None
        if layer is not None:
            layer = layer.decode() if isinstance(layer, bytes) else str(layer)
            out[layer].append(name.replace(".", "_"))
    return dict(out)


def run(
    graph: nir.NIRGraph, x: np.ndarray, batch: int, spikes_for: int | None = None
) -> dict[str, np.ndarray]:
    """The graph's output for ``x`` ``[T, B, ...]`` and the per-layer spikes of its first
    ``spikes_for`` samples (all by default)."""
    spikes_for = x.shape[1] if spikes_for is None else spikes_for
    by_layer = layers(graph)
    net = import_from_nir(graph)
    net.eval()
    record: dict[str, torch.Tensor] = {}

    def hook(name):
        def keep(_module, _inputs, output):
            record[name] = output[0] if isinstance(output, tuple) else output

        return keep

    leaky = {n: m for n, m in net.named_modules() if isinstance(m, snn.Leaky)}
    for name, module in leaky.items():
        module.register_forward_hook(hook(name))
    outputs, spikes = [], collections.defaultdict(list)
    with torch.no_grad():
        for start in range(0, x.shape[1], batch):
            for module in leaky.values():  # a new sequence: every membrane at rest
                module.mem = torch.zeros(0)
            out_t, spk_t = [], collections.defaultdict(list)
            for t in range(x.shape[0]):
                out, _state = net(torch.from_numpy(x[t, start : start + batch]))
                out_t.append(out.numpy())
                keep = max(0, min(batch, spikes_for - start))
                for layer, nodes in by_layer.items():
                    if keep:
                        spk_t[layer].append(sum(record[n][:keep] for n in nodes).numpy())
            outputs.append(np.stack(out_t))
            for layer, s in spk_t.items():
                spikes[layer].append(np.stack(s))
    result = {"output": np.concatenate(outputs, axis=1)}
    result.update({f"spikes/{k}": np.concatenate(v, axis=1) for k, v in spikes.items()})
    return result


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("graph")
    parser.add_argument("inputs")
    parser.add_argument("out")
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--spikes-for", type=int, default=None)
    parser.add_argument("--no-flatten-fix", action="store_true")
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    graph = nir.read(args.graph)
    if not args.no_flatten_fix:
        fix_flatten(graph)
    x = np.load(args.inputs)["x"].astype(np.float32)
    np.savez(args.out, **run(graph, x, args.batch, args.spikes_for))


if __name__ == "__main__":
    main()
