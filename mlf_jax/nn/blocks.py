"""Residual blocks of the spiking ResNets of Feng et al. (2022) (the method page, section
[Residual blocks][residual-blocks]).

Activations are time-major ``[T, B, H, W, C]``. Flax convolutions accept
several leading batch axes, so ``T`` and ``B`` are folded by the convolution
itself; tdBN reduces over every axis but the channels; only the neuron loops
over ``T``.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import jax
from flax import linen as nn

from mlf_jax.nn.conv import conv_general_dilated
from mlf_jax.nn.neuron import Neuron
from mlf_jax.nn.normalization import TdBatchNorm

__all__ = ["BasicBlock", "SHORTCUTS", "kaiming_normal", "conv3x3", "conv1x1"]

ModuleFactory = Callable[..., nn.Module]

#: Shortcut kinds: ``'ds'`` adds after the neuron (spiking DS-ResNet),
#: ``'standard'`` adds before it (spiking ResNet, the tdBN baseline).
SHORTCUTS = ("ds", "standard")

#: PyTorch's ``kaiming_normal_`` (fan_in, gain sqrt(2), untruncated normal).
kaiming_normal = nn.initializers.variance_scaling(2.0, "fan_in", "normal")


def _conv(features, kernel, strides, padding, dtype, impl, name) -> nn.Conv:
    """Square-kernel convolution without bias, Kaiming normal, computed per ``impl``."""
    return nn.Conv(
        features,
        (kernel, kernel),
        strides=(strides, strides),
        padding=padding,
        use_bias=False,
        kernel_init=kaiming_normal,
        dtype=dtype,
        conv_general_dilated=conv_general_dilated(impl),
        name=name,
    )


def conv3x3(
    features: int,
    strides: int = 1,
    *,
    dtype: Any = None,
    impl: str = "auto",
    name: str | None = None,
) -> nn.Conv:
    """3x3 convolution, padding 1 on each side (as PyTorch), no bias, Kaiming normal.

    ``impl``: how it is computed (:data:`mlf_jax.nn.conv.CONV_IMPLS`): ``'auto'``
    (default: on CPU XLA's convolution with the kernel gradient as a patch matmul, XLA's
    elsewhere), ``'xla'``, ``'patch_grad'`` or ``'im2col'`` (one matmul over patches)."""
    return _conv(features, 3, strides, ((1, 1), (1, 1)), dtype, impl, name)


def conv1x1(
    features: int,
    strides: int = 1,
    *,
    dtype: Any = None,
    impl: str = "auto",
    name: str | None = None,
) -> nn.Conv:
    """1x1 convolution (projection shortcut), no padding, no bias, Kaiming normal
    (``impl`` as in :func:`conv3x3`)."""
    return _conv(features, 1, strides, "VALID", dtype, impl, name)


def check_shortcut(shortcut: str) -> str:
    """Returns ``shortcut`` if valid, else raises a ``ValueError`` naming the options."""
    if shortcut not in SHORTCUTS:
        raise ValueError(f"unknown shortcut {shortcut!r}; expected one of {SHORTCUTS}")
    return shortcut


class BasicBlock(nn.Module):
    """conv3x3(stride) -> tdBN -> neuron -> conv3x3 -> tdBN, plus a shortcut.

    * ``shortcut='ds'`` (spiking DS-ResNet): ``out = MLF(residual) + shortcut(x)``;
      a projection shortcut is conv1x1 -> tdBN -> MLF.
    * ``shortcut='standard'`` (spiking ResNet): ``out = MLF(residual + shortcut(x))``;
      a projection shortcut is conv1x1 -> tdBN.

    The shortcut is the identity unless ``strides != 1`` or the width changes.

    Attributes:
      features: output channels.
      strides: stride of the first convolution (and of the projection).
      shortcut: ``'ds'`` or ``'standard'``.
      neuron: factory of the spiking layer, called as ``neuron(name=...)`` (default
        :class:`mlf_jax.nn.Neuron`: the MLF neuron with the paper's settings).
      norm: factory of the normalisation; called with ``use_running_average``.
      dtype: compute dtype of the convolutions (``None``: the input's).
      conv_impl: how convolutions are computed (see :func:`conv3x3`).
    """

    features: int
    strides: int = 1
    shortcut: str = "ds"
    neuron: ModuleFactory = Neuron
    norm: ModuleFactory = TdBatchNorm
    dtype: Any = None
    conv_impl: str = "auto"

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        """``train``: normalise with the batch's statistics and update the running ones
        (apply with ``mutable=['batch_stats']``); False (default): the running ones."""
        check_shortcut(self.shortcut)
        norm = functools.partial(self.norm, use_running_average=not train)
        r = conv3x3(
            self.features, self.strides, dtype=self.dtype, impl=self.conv_impl, name="conv1"
        )(x)
        r = norm(name="bn1")(r)
        r = self.neuron(name="neuron1")(r)
        r = conv3x3(self.features, dtype=self.dtype, impl=self.conv_impl, name="conv2")(r)
        r = norm(name="bn2")(r)

        if self.strides != 1 or x.shape[-1] != self.features:
            s = conv1x1(
                self.features,
                self.strides,
                dtype=self.dtype,
                impl=self.conv_impl,
                name="shortcut_conv",
            )(x)
            s = norm(name="shortcut_bn")(s)
            if self.shortcut == "ds":
                s = self.neuron(name="shortcut_neuron")(s)
        else:
            s = x

        if self.shortcut == "ds":
            return self.neuron(name="neuron2")(r) + s.astype(r.dtype)
        return self.neuron(name="neuron2")(r + s.astype(r.dtype))
