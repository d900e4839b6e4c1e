"""im2col convolution against XLA's convolution (an independent implementation)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

import mlf_jax as mj
from mlf_jax.nn.conv import auto_conv, conv_general_dilated, im2col_conv, patch_grad_conv

NHWC = ("NHWC", "HWIO", "NHWC")


def _xla(x, w, strides, padding, **kw):
    return lax.conv_general_dilated(x, w, strides, padding, dimension_numbers=NHWC, **kw)


def _ours(x, w, strides, padding, **kw):
    dn = lax.conv_dimension_numbers(x.shape, w.shape, NHWC)
    return im2col_conv(x, w, strides, padding, dimension_numbers=dn, **kw)


@pytest.mark.parametrize(
    ("shape", "kernel", "strides", "padding"),
    [
        ((2, 8, 8, 3), (3, 3, 3, 5), (1, 1), ((1, 1), (1, 1))),
        ((2, 9, 7, 4), (3, 3, 4, 6), (2, 2), ((1, 1), (1, 1))),
        ((2, 8, 8, 4), (1, 1, 4, 6), (2, 2), "VALID"),
        ((1, 7, 9, 2), (3, 2, 2, 3), (2, 1), "SAME"),
        ((3, 6, 6, 2), (3, 3, 2, 2), (1, 1), ((0, 2), (1, 0))),
    ],
)
def test_values_and_gradients_equal_xla_convolution(shape, kernel, strides, padding):
    kx, kw, kg = jax.random.split(jax.random.key(sum(shape)), 3)
    x = jax.random.normal(kx, shape)
    w = jax.random.normal(kw, kernel)
    want, vjp_want = jax.vjp(lambda x, w: _xla(x, w, strides, padding), x, w)
    got, vjp_got = jax.vjp(lambda x, w: _ours(x, w, strides, padding), x, w)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    g = jax.random.normal(kg, want.shape)
    for a, b in zip(vjp_got(g), vjp_want(g), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-4)


def test_unsupported_cases_fall_back_to_xla():
    x = jax.random.normal(jax.random.key(0), (1, 8, 8, 4))
    w = jax.random.normal(jax.random.key(1), (3, 3, 2, 4))  # 2 feature groups
    dn = lax.conv_dimension_numbers(x.shape, w.shape, NHWC)
    got = im2col_conv(x, w, (1, 1), "SAME", dimension_numbers=dn, feature_group_count=2)
    want = _xla(x, w, (1, 1), "SAME", feature_group_count=2)
    np.testing.assert_array_equal(got, want)
    w = jax.random.normal(jax.random.key(1), (3, 3, 4, 4))
    got = _ours(x, w, (1, 1), "SAME", rhs_dilation=(2, 2))
    np.testing.assert_array_equal(got, _xla(x, w, (1, 1), "SAME", rhs_dilation=(2, 2)))


def _primitives(fn, *args):
    return {str(e.primitive) for e in jax.make_jaxpr(fn)(*args).eqns}


def test_auto_is_patch_grad_on_cpu_and_flax_conv_uses_it():
    conv = mj.nn.conv3x3(5, impl="auto")
    x = jax.random.normal(jax.random.key(0), (2, 3, 6, 6, 4))  # [T, B, H, W, C]: Flax folds T, B
    params = conv.init(jax.random.key(1), x)

    def grad_prims(p):
        return _primitives(jax.grad(lambda p: (conv.apply(p, x) ** 2).sum()), p)

    if jax.default_backend() == "cpu":  # the kernel gradient is a matmul
        assert "custom_vjp_call" in _primitives(lambda p: conv.apply(p, x), params)
        assert "dot_general" in grad_prims(params)
    xla = mj.nn.conv3x3(5, impl="xla")
    np.testing.assert_array_equal(conv.apply(params, x), xla.apply(params, x))
    assert conv_general_dilated("im2col") is im2col_conv
    assert conv_general_dilated("patch_grad") is patch_grad_conv
    assert conv_general_dilated("auto") is auto_conv


@pytest.mark.parametrize(
    "shape, kernel, strides, padding",
    [
        ((3, 9, 9, 5), (3, 3, 5, 7), (1, 1), "SAME"),
        ((3, 9, 9, 5), (3, 3, 5, 7), (2, 2), ((1, 1), (1, 1))),
        ((2, 8, 8, 4), (1, 1, 4, 6), (2, 2), "VALID"),
        ((2, 7, 9, 3), (3, 3, 3, 2), (1, 2), ((0, 2), (1, 0))),
    ],
)
def test_patch_grad_equals_xla_forward_and_both_gradients(shape, kernel, strides, padding):
    x = jax.random.normal(jax.random.key(2), shape)
    w = jax.random.normal(jax.random.key(3), kernel)
    dn = ("NHWC", "HWIO", "NHWC")

    def run(conv):
        def loss(x, w):
            y = conv(x, w, strides, padding, dimension_numbers=dn)
            return (y * jnp.cos(y)).sum(), y

        (_, y), grads = jax.value_and_grad(loss, argnums=(0, 1), has_aux=True)(x, w)
        return y, grads

    y, (dx, dw) = run(patch_grad_conv)
    y_ref, (dx_ref, dw_ref) = run(lax.conv_general_dilated)
    np.testing.assert_array_equal(y, y_ref)  # the same XLA convolution
    np.testing.assert_array_equal(dx, dx_ref)  # and its own input gradient
    # summation order only: float32 rounding relative to the gradient's scale
    np.testing.assert_allclose(dw, dw_ref, rtol=1e-5, atol=1e-6 * float(jnp.abs(dw_ref).max()))


def test_unknown_impl_is_an_error():
    with pytest.raises(ValueError, match="unknown convolution impl 'cudnn'"):
        conv_general_dilated("cudnn")


def test_resnet_conv_impls_agree():
    model = mj.models.resnet(8, widths=(4, 8, 8), time_steps=2, in_channels=1)
    x = jax.random.uniform(jax.random.key(0), (3, 8, 8, 1))
    variables = jax.jit(model.init)(jax.random.key(1), x)

    def logits(impl):  # under jit: one compilation each, not one per operation run eagerly
        m = model.clone(conv_impl=impl)
        return jax.jit(lambda v, x: m.apply(v, x, train=True, mutable=["batch_stats"])[0])(
            variables, x
        )

    outs = {impl: logits(impl) for impl in ("xla", "im2col", "patch_grad")}
    np.testing.assert_allclose(outs["im2col"], outs["xla"], rtol=1e-4, atol=1e-4)
    np.testing.assert_array_equal(outs["patch_grad"], outs["xla"])
