"""Convolution as one matrix product over image patches (im2col), for XLA:CPU.

XLA:CPU's own convolutions run well below its matrix-multiply rate for the shapes of
the spiking ResNets (3x3 and 1x1 kernels, 16 to 256 channels). Gathering the ``kh * kw``
shifted views of the padded input into one ``[N * H' * W', kh * kw * C]`` patch matrix
and multiplying it by the ``[kh * kw * C, O]`` kernel turns each convolution into one
large matmul, and autodiff turns its backward pass into two more. Measured on the 2-core
development machine (forward+backward, batch 256; ``experiments/bench/README.md``): 1.1x
to 3.7x faster than ``lax.conv_general_dilated``, e.g. 741 -> 317 ms for 16x16x128 -> 128;
whole train steps timed in alternation gained only 0.92-1.12x there (within the machine's
noise). The price is memory: the patch matrix is ``kh * kw`` times the input, and it is kept for
the backward pass. On GPU and TPU ``'auto'`` keeps XLA's convolutions (im2col was not
measured there).

:func:`conv_general_dilated` (``impl``) picks per backend: ``'auto'`` is im2col on CPU
for inputs of 32 channels or more, XLA's convolution otherwise and on GPU/TPU. Both have
the signature of ``lax.conv_general_dilated`` and are passed to
``flax.linen.Conv(conv_general_dilated=...)``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
from jax import lax

__all__ = [
    "CONV_IMPLS",
    "IM2COL_MIN_CHANNELS",
    "im2col_conv",
    "auto_conv",
    "conv_general_dilated",
]

#: ``'auto'`` (im2col on CPU from 32 input channels, XLA otherwise), ``'xla'``, ``'im2col'``.
CONV_IMPLS = ("auto", "xla", "im2col")

#: Flax's dimension numbers for a 2-D convolution: NHWC input and output, HWIO kernel.
_NHWC = lax.ConvDimensionNumbers((0, 3, 1, 2), (3, 2, 0, 1), (0, 3, 1, 2))


def _ones(values) -> bool:
    return values is None or all(v == 1 for v in values)


def _is_nhwc(dimension_numbers) -> bool:
    if dimension_numbers is None:
        return False
    if isinstance(dimension_numbers, lax.ConvDimensionNumbers):
        return tuple(map(tuple, dimension_numbers)) == tuple(map(tuple, _NHWC))
    return tuple(dimension_numbers) == ("NHWC", "HWIO", "NHWC")


def _explicit_padding(padding, kernel: Sequence[int], strides: Sequence[int], spatial):
    """``padding`` as ``((lo, hi), (lo, hi))``; ``'SAME'``/``'VALID'`` as XLA computes them."""
    if isinstance(padding, str):
        return lax.padtype_to_pads(spatial, kernel, strides, padding)
    return tuple(tuple(p) for p in padding)


def im2col_conv(
    lhs: jax.Array,
    rhs: jax.Array,
    window_strides: Sequence[int],
    padding: str | Sequence[tuple[int, int]],
    lhs_dilation: Sequence[int] | None = None,
    rhs_dilation: Sequence[int] | None = None,
    dimension_numbers=None,
    feature_group_count: int = 1,
    batch_group_count: int = 1,
    precision=None,
    preferred_element_type=None,
) -> jax.Array:
    """``lax.conv_general_dilated`` computed as a matmul over image patches.

    Handles 2-D NHWC/HWIO convolutions without dilation or feature groups (every
    convolution of the spiking ResNets); anything else is passed to
    ``lax.conv_general_dilated`` unchanged, so the result is always that of XLA's
    convolution up to the order of summation.
    """
    simple = (
        lhs.ndim == 4
        and _is_nhwc(dimension_numbers)
        and _ones(lhs_dilation)
        and _ones(rhs_dilation)
        and feature_group_count == 1
        and batch_group_count == 1
    )
    if not simple:
        return lax.conv_general_dilated(
            lhs, rhs, window_strides, padding, lhs_dilation, rhs_dilation, dimension_numbers,
            feature_group_count, batch_group_count, precision, preferred_element_type,
        )  # fmt: skip
    n, h, w, c = lhs.shape
    kh, kw, _, out = rhs.shape
    sh, sw = window_strides
    (pt, pb), (pl, pr) = _explicit_padding(padding, (kh, kw), (sh, sw), (h, w))
    x = jnp.pad(lhs, ((0, 0), (pt, pb), (pl, pr), (0, 0)))
    ho, wo = (h + pt + pb - kh) // sh + 1, (w + pl + pr - kw) // sw + 1
    views = [
        x[:, i : i + sh * (ho - 1) + 1 : sh, j : j + sw * (wo - 1) + 1 : sw, :]
        for i in range(kh)
        for j in range(kw)
    ]  # patch layout (i, j, c) matches the HWIO kernel reshaped to [kh * kw * c, out]
    patches = jnp.concatenate(views, axis=-1) if len(views) > 1 else views[0]
    y = lax.dot_general(
        patches.reshape(n * ho * wo, kh * kw * c),
        rhs.reshape(kh * kw * c, out),
        (((1,), (0,)), ((), ())),
        precision=precision,
        preferred_element_type=preferred_element_type,
    )
    return y.reshape(n, ho, wo, out)


#: ``'auto'`` uses im2col for inputs with at least this many channels (on CPU).
IM2COL_MIN_CHANNELS = 32


def auto_conv(lhs: jax.Array, *args, **kwargs) -> jax.Array:
    """:func:`im2col_conv` on CPU for inputs of at least :data:`IM2COL_MIN_CHANNELS`
    channels, else XLA's convolution (decided when traced). Below 32 channels im2col
    gained little (16 -> 16 channels at 32x32: 1.1x) for nine times the memory."""
    if jax.default_backend() == "cpu" and lhs.shape[-1] >= IM2COL_MIN_CHANNELS:
        return im2col_conv(lhs, *args, **kwargs)
    return lax.conv_general_dilated(lhs, *args, **kwargs)


def conv_general_dilated(impl: str = "auto") -> Callable[..., jax.Array]:
    """The convolution function for ``impl`` in :data:`CONV_IMPLS`."""
    impls = {"auto": auto_conv, "xla": lax.conv_general_dilated, "im2col": im2col_conv}
    if impl not in impls:
        raise ValueError(f"unknown convolution impl {impl!r}; expected one of {CONV_IMPLS}")
    return impls[impl]
