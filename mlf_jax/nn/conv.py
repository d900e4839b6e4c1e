"""Convolutions for XLA:CPU built on matrix products over image patches.

XLA:CPU's own convolutions run well below its matrix-multiply rate for the shapes of the
spiking ResNets (3x3 and 1x1 kernels, 16 to 256 channels), and the slowest part is the
kernel gradient of the backward pass, several times the forward convolution at the CIFAR10
shapes. Two remedies, both exact up to the order of summation:

* :func:`patch_grad_conv`: XLA's convolution forward and for the input gradient; the
  kernel gradient as one matrix product ``patches(x)^T dL/dy``, the patches gathered
  from the saved input during the backward pass. Memory as XLA's convolution (the input
  is the only residual). ``'auto'`` on CPU.
* :func:`im2col_conv`: the whole convolution as one matmul over the ``[N H' W', kh kw C]``
  patch matrix, autodiff for the rest. Faster single convolutions, but the patch matrix
  (``kh * kw`` times the input) is kept for the backward pass, so it needs several times
  the memory.

:func:`conv_general_dilated` (``impl``) picks: ``'auto'`` is :func:`patch_grad_conv` on
CPU and XLA's convolution on GPU/TPU (neither remedy was measured there); ``'xla'``,
``'im2col'`` and ``'patch_grad'`` force one. Each has the signature of
``lax.conv_general_dilated`` and is passed to ``flax.linen.Conv(conv_general_dilated=...)``.
Measurements: the benchmarks guide, section [Convolutions][bench-convolutions].
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
from jax import lax

from mlf_jax.shard_map_casts import vary_alike

__all__ = [
    "CONV_IMPLS",
    "im2col_conv",
    "patch_grad_conv",
    "auto_conv",
    "conv_general_dilated",
]

#: ``'auto'`` (``'patch_grad'`` on CPU, ``'xla'`` elsewhere), ``'xla'``, ``'im2col'``,
#: ``'patch_grad'`` (XLA's convolution, kernel gradient as a patch matmul).
CONV_IMPLS = ("auto", "xla", "im2col", "patch_grad")

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


def _simple(lhs, dimension_numbers, lhs_dilation, rhs_dilation, groups, batch_groups) -> bool:
    """A 2-D NHWC/HWIO convolution without dilation or groups (every convolution of the
    spiking ResNets): the case the patch-based implementations handle."""
    return (
        lhs.ndim == 4
        and _is_nhwc(dimension_numbers)
        and _ones(lhs_dilation)
        and _ones(rhs_dilation)
        and groups == 1
        and batch_groups == 1
    )


def _patches(x, kernel, strides, pads):
    """The ``[N * H' * W', kh * kw * C]`` patch matrix of NHWC ``x`` and ``(H', W')``; the
    patch layout ``(i, j, c)`` matches an HWIO kernel reshaped to ``[kh * kw * C, O]``."""
    n, h, w, c = x.shape
    (kh, kw), (sh, sw), ((pt, pb), (pl, pr)) = kernel, strides, pads
    x = jnp.pad(x, ((0, 0), (pt, pb), (pl, pr), (0, 0)))
    ho, wo = (h + pt + pb - kh) // sh + 1, (w + pl + pr - kw) // sw + 1
    views = [
        x[:, i : i + sh * (ho - 1) + 1 : sh, j : j + sw * (wo - 1) + 1 : sw, :]
        for i in range(kh)
        for j in range(kw)
    ]
    patches = jnp.concatenate(views, axis=-1) if len(views) > 1 else views[0]
    return patches.reshape(n * ho * wo, kh * kw * c), (ho, wo)


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
    if not _simple(
        lhs, dimension_numbers, lhs_dilation, rhs_dilation, feature_group_count, batch_group_count
    ):
        return lax.conv_general_dilated(
            lhs, rhs, window_strides, padding, lhs_dilation, rhs_dilation, dimension_numbers,
            feature_group_count, batch_group_count, precision, preferred_element_type,
        )  # fmt: skip
    n, h, w, c = lhs.shape
    kh, kw, _, out = rhs.shape
    pads = _explicit_padding(padding, (kh, kw), tuple(window_strides), (h, w))
    patches, (ho, wo) = _patches(lhs, (kh, kw), tuple(window_strides), pads)
    y = lax.dot_general(
        patches,
        rhs.reshape(kh * kw * c, out),
        (((1,), (0,)), ((), ())),
        precision=precision,
        preferred_element_type=preferred_element_type,
    )
    return y.reshape(n, ho, wo, out)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3, 4))
def _patch_grad(x, w, strides, pads, precision):
    return _xla_conv(x, w, strides, pads, precision)


def _xla_conv(x, w, strides, pads, precision):
    return lax.conv_general_dilated(
        x, w, strides, pads, dimension_numbers=("NHWC", "HWIO", "NHWC"), precision=precision
    )


def _patch_grad_fwd(x, w, strides, pads, precision):
    return _xla_conv(x, w, strides, pads, precision), (x, w)


def _patch_grad_bwd(strides, pads, precision, residuals, g):
    x, w = residuals
    kh, kw, c, out = w.shape
    dx = jax.vjp(lambda x: _xla_conv(x, w, strides, pads, precision), x)[1](g)[0]
    patches, _ = _patches(x, (kh, kw), strides, pads)
    dw = lax.dot_general(patches, g.reshape(-1, out), (((0,), (0,)), ((), ())), precision=precision)
    return dx, dw.reshape(w.shape).astype(w.dtype)


_patch_grad.defvjp(_patch_grad_fwd, _patch_grad_bwd)


def patch_grad_conv(
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
    """XLA's convolution, with its kernel gradient computed as one matmul over patches.

    Forward pass and input gradient are ``lax.conv_general_dilated`` and its autodiff;
    the kernel gradient ``dL/dw = patches(x)^T dL/dy`` is one ``[kh kw C, N H' W'] x
    [N H' W', O]`` matrix product, the patches gathered from the saved input during the
    backward pass (so, unlike :func:`im2col_conv`, nothing larger than the input is kept
    between the passes). On XLA:CPU the kernel gradient is the slow part of a convolution,
    and the patch matmul is faster than it (figures: the benchmarks guide, section
    [Convolutions][bench-convolutions]).
    Other convolutions (dilated, grouped, not NHWC) go to ``lax.conv_general_dilated``.
    """
    if preferred_element_type is not None or not _simple(
        lhs, dimension_numbers, lhs_dilation, rhs_dilation, feature_group_count, batch_group_count
    ):
        return lax.conv_general_dilated(
            lhs, rhs, window_strides, padding, lhs_dilation, rhs_dilation, dimension_numbers,
            feature_group_count, batch_group_count, precision, preferred_element_type,
        )  # fmt: skip
    kh, kw = rhs.shape[:2]
    strides = tuple(window_strides)
    pads = _explicit_padding(padding, (kh, kw), strides, lhs.shape[1:3])
    # inside shard_map the kernel is replicated and the input varies: the cast outside
    # the custom_vjp turns the per-device kernel gradient into its sum over devices
    lhs, rhs = vary_alike(lhs, rhs)
    return _patch_grad(lhs, rhs, strides, pads, precision)


def auto_conv(lhs: jax.Array, *args, **kwargs) -> jax.Array:
    """:func:`patch_grad_conv` on CPU, XLA's convolution elsewhere (decided when traced)."""
    if jax.default_backend() == "cpu":
        return patch_grad_conv(lhs, *args, **kwargs)
    return lax.conv_general_dilated(lhs, *args, **kwargs)


def conv_general_dilated(impl: str = "auto") -> Callable[..., jax.Array]:
    """The convolution function for ``impl`` in :data:`CONV_IMPLS`."""
    impls = {
        "auto": auto_conv,
        "xla": lax.conv_general_dilated,
        "im2col": im2col_conv,
        "patch_grad": patch_grad_conv,
    }
    if impl not in impls:
        raise ValueError(f"unknown convolution impl {impl!r}; expected one of {CONV_IMPLS}")
    return impls[impl]
