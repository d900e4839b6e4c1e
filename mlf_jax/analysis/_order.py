"""Forward (call) order of module paths named as in :mod:`mlf_jax.models`.

JAX's pytree functions (``jax.grad``, ``jax.tree.map``, ``jit`` outputs) rebuild
dicts with their keys *sorted*, so a gradient pytree lists ``'head'`` before
``'stem_conv'`` and ``'shortcut_bn'`` after ``'conv2'``. Flax's own ``init``/``apply``
keep insertion (= call) order. This module restores the call order from the
names used by :class:`mlf_jax.models.ResNet` and :class:`mlf_jax.nn.BasicBlock`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

__all__ = ["forward_order", "join_path"]

Path = tuple[str, ...]

_NETWORK_RANK = {"input_bn": 0, "stem_conv": 1, "stem_bn": 2, "stem_neuron": 3}
#: Call order inside :class:`mlf_jax.nn.BasicBlock` (the shortcut runs after bn2).
_BLOCK_RANK = {
    name: i
    for i, name in enumerate(
        [
            "conv1",
            "bn1",
            "neuron1",
            "conv2",
            "bn2",
            "shortcut_conv",
            "shortcut_bn",
            "shortcut_neuron",
            "neuron2",
        ]
    )
}
_STAGE_BLOCK = re.compile(r"stage(\d+)_block(\d+)")


def join_path(path: Sequence[str]) -> str:
    """``('stage1_block1', 'neuron1') -> 'stage1_block1/neuron1'``."""
    return "/".join(path)


def _rank(name: str) -> tuple | None:
    """Sort key of a known module name, ``None`` for an unknown one."""
    if name in _NETWORK_RANK:
        return (0, _NETWORK_RANK[name])
    m = _STAGE_BLOCK.fullmatch(name)
    if m:
        return (1, int(m[1]), int(m[2]))
    if name == "head":
        return (2,)
    if name in _BLOCK_RANK:
        return (3, _BLOCK_RANK[name])
    return None


def forward_order(paths: Iterable[Path]) -> list[Path]:
    """Sorts module paths into forward order where the names allow.

    Paths are grouped as a tree (a module before its children). At each level the
    siblings are sorted by the ResNet/BasicBlock naming scheme (``input_bn``,
    ``stem_conv``, ``stem_bn``, ``stem_neuron``, ``stage{i}_block{j}`` by ``(i, j)``,
    ``head``; inside a block ``conv1, bn1, neuron1, conv2, bn2, shortcut_conv,
    shortcut_bn, shortcut_neuron, neuron2``) when *every* sibling name is known;
    otherwise that level keeps the order in which the paths were given.
    """
    root: dict = {}
    terminal = object()
    for path in paths:
        node = root
        for name in path:
            node = node.setdefault(name, {})
        node[terminal] = tuple(path)

    out: list[Path] = []

    def walk(node: dict) -> None:
        if terminal in node:
            out.append(node[terminal])
        names = [k for k in node if k is not terminal]
        ranks = [_rank(n) for n in names]
        if all(r is not None for r in ranks):
            ranked = [(r, n) for r, n in zip(ranks, names, strict=True) if r is not None]
            names = [n for _, n in sorted(ranked, key=lambda p: p[0])]
        for name in names:
            walk(node[name])

    walk(root)
    return out
