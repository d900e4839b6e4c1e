"""Small spiking ResNets with trained-looking variables (tdBN statistics and affine
parameters away from their initial values, learned thresholds and leak moved) for the NIR
tests, and their spikes per layer."""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

import mlf_jax as mj


def perturbed(variables: dict[str, Any], seed: int) -> dict[str, Any]:
    """``variables`` with tdBN's statistics and parameters, and every neuron parameter,
    moved by random amounts (the weights are already random)."""
    rng = np.random.default_rng(seed)

    def move(path, leaf):
        name = jax.tree_util.keystr(path)
        a = np.asarray(leaf)
        if "'var'" in name:
            return jnp.asarray(rng.uniform(0.3, 2.0, a.shape), a.dtype)
        if "'mean'" in name:
            return jnp.asarray(rng.normal(0.0, 0.3, a.shape), a.dtype)
        if "'scale'" in name:
            return jnp.asarray(rng.uniform(0.6, 1.6, a.shape), a.dtype)
        if "'bias'" in name and "head" not in name:
            return jnp.asarray(rng.normal(0.2, 0.3, a.shape), a.dtype)
        if "thresholds_raw" in name or "tau_logit" in name:
            return jnp.asarray(a + rng.normal(0.0, 0.2, a.shape), a.dtype)
        return leaf

    return jax.tree_util.tree_map_with_path(move, variables)


def small(shortcut: str = "ds", time_steps: int = 3, seed: int = 0, **kwargs):
    """``(net, variables, x)``: a ResNet-8 of widths 4/8/8 on 8x8x2 inputs, batch 3."""
    kw: dict[str, Any] = dict(
        widths=(4, 8, 8), num_classes=5, time_steps=time_steps, shortcut=shortcut
    )
    kw.update(kwargs)
    net = mj.models.resnet(8, **kw)
    x = jax.random.normal(jax.random.key(seed), (3, 8, 8, 2)) * 1.5
    variables = perturbed(dict(jax.jit(net.init)(jax.random.key(seed + 1), x)), seed)
    return net, variables, x


def linen_run(net, variables, x) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Logits and ``{layer: spikes [T, B, C, H, W]}`` (NIR's layout) of the Linen model."""
    logits, state = jax.jit(functools.partial(net.apply, mutable=["intermediates"]))(variables, x)
    spikes = {}

    def walk(tree, path):
        for k, v in tree.items():
            if k == "spikes":
                spikes["/".join(path)] = np.moveaxis(np.asarray(v[0]), -1, 2)
            elif isinstance(v, dict):
                walk(v, (*path, k))

    walk(state["intermediates"], ())
    return np.asarray(logits), spikes


def imported_run(model, variables, x, return_spikes: bool = True):
    """An imported :class:`mlf_jax.nir.NIRModel` applied under ``jit``."""
    return jax.jit(model.apply, static_argnames="return_spikes")(
        variables, x, return_spikes=return_spikes
    )


def nchw_steps(x, time_steps: int) -> np.ndarray:
    """Static ``[B, H, W, C]`` images as NIR's time-major input ``[T, B, C, H, W]``."""
    return np.repeat(np.moveaxis(np.asarray(x), -1, 1)[None], time_steps, axis=0)
