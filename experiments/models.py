"""The model an experiment config describes (shared by ``train.py`` and the studies)."""

from __future__ import annotations

import dataclasses
from typing import Any

import jax.numpy as jnp

import mlf_jax as mj
from mlf_jax.data import registry

__all__ = ["DTYPES", "build_model"]

DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}
#: ``config.model`` keys that are not :class:`mlf_jax.models.ResNet` fields of the same name:
#: the depth (the ResNet's stage sizes), the surrogate as a family name and its parameter,
#: and the dtype as a name. Every other key is the ResNet's field of that name.
_CONVERTED = ("depth", "surrogate", "surrogate_param", "dtype")
#: ResNet fields that come from elsewhere: the data set, the depth, the training set-up,
#: Flax's own, and a neuron given in code.
_NOT_FROM_THE_MODEL_KEYS = {"num_classes", "in_channels", "stage_sizes", "axis_name", "neuron"}
_NOT_FROM_THE_MODEL_KEYS |= {"name", "parent"}


def build_model(config: Any) -> mj.models.ResNet:
    """The ``ResNet`` described by ``config.model`` for ``config.dataset``: the data set's
    classes and channels from the registry, cross-device tdBN from ``config.cross_device_bn``.

    Raises:
      ValueError: an unknown data set, dtype, or a ``config.model`` key the ResNet has not.
    """
    m = config.model
    if m.dtype not in DTYPES:
        raise ValueError(f"unknown model.dtype {m.dtype!r}; expected one of {sorted(DTYPES)}")
    spec = registry.get(config.dataset)  # ValueError naming the known data sets
    fields = {f.name for f in dataclasses.fields(mj.models.ResNet)} - _NOT_FROM_THE_MODEL_KEYS
    fields |= set(mj.models.MLF_SETTINGS)  # the MLF neuron's settings, by name
    same = {k: v for k, v in m.items() if k not in _CONVERTED}
    if unknown := sorted(set(same) - fields):
        raise ValueError(f"config.model has keys the ResNet does not take from it: {unknown}")
    return mj.models.resnet(
        m.depth,
        num_classes=spec.classes,
        in_channels=spec.channels,
        surrogate=mj.get_surrogate(m.surrogate, m.surrogate_param),
        dtype=DTYPES[m.dtype],
        axis_name=mj.train.AXIS if config.cross_device_bn else None,
        **{k: tuple(v) if isinstance(v, (list, tuple)) else v for k, v in same.items()},
    )
