"""The model an experiment config describes (shared by ``train.py`` and the studies)."""

from __future__ import annotations

from typing import Any

import jax.numpy as jnp

import mlf_jax as mj
from mlf_jax.data import registry

__all__ = ["DTYPES", "build_model"]

DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}


def build_model(config: Any) -> mj.models.ResNet:
    """The ``ResNet`` described by ``config.model`` for ``config.dataset``."""
    m = config.model
    if m.dtype not in DTYPES:
        raise ValueError(f"unknown model.dtype {m.dtype!r}; expected one of {sorted(DTYPES)}")
    spec = registry.get(config.dataset)  # ValueError naming the known data sets
    return mj.models.resnet(
        m.depth,
        widths=tuple(m.widths),
        num_classes=spec.classes,
        shortcut=m.shortcut,
        time_steps=m.time_steps,
        input_norm=m.input_norm,
        in_channels=spec.channels,
        thresholds=tuple(m.thresholds),
        tau=m.tau,
        v_th=m.get("v_th"),
        learn_tau=m.get("learn_tau", False),
        learn_thresholds=m.get("learn_thresholds", False),
        encoder=m.get("encoder", "direct"),
        surrogate=mj.get_surrogate(m.surrogate, m.surrogate_param),
        detach_reset=m.detach_reset,
        axis_name=mj.train.AXIS if config.cross_device_bn else None,
        dtype=DTYPES[m.dtype],
        conv_impl=m.conv_impl,
        remat=m.get("remat", False),
        neuron_impl=m.get("neuron_impl", "auto"),
    )
