"""Pallas MLF kernels (interpret mode on CPU) against mlf_jax.neurons.mlf and its autodiff."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mlf_jax.kernels.pallas_mlf import mlf_pallas
from mlf_jax.neurons import mlf
from mlf_jax.surrogate import arctan, rectangular, sigmoid, triangle

THRESHOLDS = {1: (0.6,), 3: (0.6, 1.6, 2.6)}


def _inputs(shape, seed):
    rng = np.random.default_rng(seed)
    # Mean 1.2, std 1.5: every level fires sometimes and many potentials sit in the windows.
    x = jnp.asarray(rng.normal(1.2, 1.5, shape), jnp.float32)
    g = jnp.asarray(rng.normal(size=shape), jnp.float32)
    return x, g


def _out_and_dx(fn, x, g):
    """Spikes and dL/dx for L = sum(spikes * g), under jit."""

    @jax.jit
    def run(x, g):
        out, vjp = jax.vjp(fn, x)
        return out, vjp(g)[0]

    return run(x, g)


def _check(pallas_fn, ref_fn, x, g, ref=None):
    """``ref``: ``_out_and_dx(ref_fn, x, g)`` computed already (shared by several tests)."""
    out, dx = _out_and_dx(pallas_fn, x, g)
    ref_out, ref_dx = _out_and_dx(ref_fn, x, g) if ref is None else ref
    assert out.shape == x.shape and out.dtype == x.dtype
    np.testing.assert_array_equal(np.asarray(out), np.asarray(ref_out))
    np.testing.assert_allclose(np.asarray(dx), np.asarray(ref_dx), rtol=1e-6, atol=1e-6)
    return out, ref_dx


@pytest.mark.parametrize("detach_reset", [False, True])
# T = 1 and T = 10 (T = 4 took the same path as T = 10: one time block of several steps)
@pytest.mark.parametrize("time_steps", [1, 10])
@pytest.mark.parametrize("levels", [1, 3])
def test_matches_mlf_and_autodiff(levels, time_steps, detach_reset):
    th = THRESHOLDS[levels]
    # N = 37: one program of 1024 units, mostly padding; T in one time block.
    x, g = _inputs((time_steps, 37), seed=100 * levels + 10 * time_steps + detach_reset)
    kw = dict(thresholds=th, tau=0.25, detach_reset=detach_reset)
    out, ref_dx = _check(
        lambda x: mlf_pallas(x, width=1.0, interpret=True, **kw),
        lambda x: mlf(x, surrogate=rectangular(1.0), **kw),
        x,
        g,
    )
    # The inputs exercise the kernel: spikes of every level and non-zero gradients.
    assert float(out.max()) == levels
    assert float(jnp.abs(ref_dx).max()) > 0


@pytest.fixture(scope="module")
def block_case():
    """Inputs of ``test_block_arrangements`` and the reference (mlf and its autodiff), once."""
    x, g = _inputs((10, 2100), seed=5)
    return x, g, _out_and_dx(mlf, x, g)


# 'cpu' is left out: in interpret mode its kernel call is the one of 'tpu' (the same
# blocks, and the compiler params that alone differ are dropped when interpreting).
@pytest.mark.parametrize("platform", ["gpu", "tpu"])
@pytest.mark.parametrize("time_block", [None, 1, 2, 5])
def test_block_arrangements(platform, time_block, block_case):
    # N = 2100 -> padded to 3072 = 24 rows of 128: 12 programs of 2 rows ('gpu') or 1 of
    # 24 rows ('tpu', 'cpu'); T = 10 in 10 / time_block sequential time blocks, the
    # potentials (forward) and deltas (backward) carried between them in scratch.
    x, g, ref = block_case
    kw = dict(platform=platform, time_block=time_block, interpret=True)
    _check(lambda x: mlf_pallas(x, **kw), mlf, x, g, ref=ref)


def test_explicit_block():
    # block=256 -> 2 rows per program, N = 3000 padded to 3072: 12 programs x 2 time blocks.
    x, g = _inputs((4, 3000), seed=6)
    _check(lambda x: mlf_pallas(x, block=256, time_block=2, interpret=True), mlf, x, g)


def test_trailing_shape_default_block_and_interpret():
    # [T, 3, 5, 7] -> N = 105 (padded to 1024); platform chosen at lowering (CPU:
    # interpret mode); interpret=None -> interpret on CPU.
    x, g = _inputs((4, 3, 5, 7), seed=1)
    _check(mlf_pallas, mlf, x, g)


def test_bfloat16_matches_mlf():
    x, g = _inputs((4, 37), seed=7)
    x, g = x.astype(jnp.bfloat16), g.astype(jnp.bfloat16)
    out, dx = _out_and_dx(lambda x: mlf_pallas(x, interpret=True), x, g)
    ref_out, ref_dx = _out_and_dx(mlf, x, g)
    assert out.dtype == jnp.bfloat16
    np.testing.assert_array_equal(np.asarray(out, np.float32), np.asarray(ref_out, np.float32))
    np.testing.assert_allclose(
        np.asarray(dx, np.float32), np.asarray(ref_dx, np.float32), rtol=2e-2, atol=2e-2
    )


@pytest.mark.parametrize(
    "surrogate", [triangle(1.0), sigmoid(4.0), arctan(2.0)], ids=lambda s: type(s).__name__
)
def test_other_surrogates(surrogate):
    x, g = _inputs((4, 37), seed=2)
    _check(
        lambda x: mlf_pallas(x, surrogate=surrogate, interpret=True),
        lambda x: mlf(x, surrogate=surrogate),
        x,
        g,
    )


def test_width_and_tau():
    th, kw = (0.5, 1.0), dict(tau=0.5, detach_reset=False)
    x, g = _inputs((4, 37), seed=3)
    _check(
        lambda x: mlf_pallas(x, thresholds=th, width=0.5, interpret=True, **kw),
        lambda x: mlf(x, thresholds=th, surrogate=rectangular(0.5), **kw),
        x,
        g,
    )


def test_hand_examples():
    # by hand: constant input 1.5 -> 1,2,1,2,...; 2.0 -> 2,2,3,...; 0.5 -> 0,1,0,1,...
    x = jnp.broadcast_to(jnp.array([1.5, 2.0, 0.5], jnp.float32), (6, 3))
    out = np.asarray(mlf_pallas(x, interpret=True))
    np.testing.assert_array_equal(out[:, 0], [1, 2, 1, 2, 1, 2])
    np.testing.assert_array_equal(out[:, 1], [2, 2, 3, 2, 2, 3])
    np.testing.assert_array_equal(out[:, 2], [0, 1, 0, 1, 0, 1])


def test_nan_propagates_like_mlf():
    x = jnp.array([[1.0, jnp.nan], [1.0, 0.0], [1.0, 0.0]], jnp.float32)
    np.testing.assert_array_equal(np.asarray(mlf_pallas(x, interpret=True)), np.asarray(mlf(x)))


def test_rejects_traced_or_invalid_parameters():
    x = jnp.ones((3, 4), jnp.float32)
    with pytest.raises(TypeError, match="static"):
        jax.jit(lambda th: mlf_pallas(x, thresholds=th, interpret=True))(jnp.array([0.6, 1.6]))
    with pytest.raises(TypeError, match="static"):
        jax.jit(lambda tau: mlf_pallas(x, tau=tau, interpret=True))(0.25)
    with pytest.raises(TypeError, match="static"):
        jax.jit(lambda a: mlf_pallas(x, thresholds=(a, 1.6), interpret=True))(0.6)
    with pytest.raises(ValueError, match="increasing"):
        mlf_pallas(x, thresholds=(1.6, 0.6), interpret=True)
    with pytest.raises(ValueError, match="tau"):
        mlf_pallas(x, tau=1.5, interpret=True)
    with pytest.raises(ValueError, match="block"):
        mlf_pallas(x, block=0, interpret=True)
    with pytest.raises(ValueError, match="multiple of 128"):
        mlf_pallas(x, block=16, interpret=True)
    with pytest.raises(ValueError, match="divide"):
        mlf_pallas(x, time_block=2, interpret=True)
    with pytest.raises(ValueError, match="platform"):
        mlf_pallas(x, platform="rocm", interpret=True)
    with pytest.raises(TypeError, match="floating"):
        mlf_pallas(jnp.ones((3, 4), jnp.int32), interpret=True)


# ---------------------------------------------------------------------------
# impl selection: mlf / lif (impl=...), MLF(impl=...), ResNet(neuron_impl=...)
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("impl", ["auto", "fused", "pallas"])
@pytest.mark.parametrize("time_steps", [4, 12])
def test_mlf_impls_match_scan(impl, time_steps):
    # T = 12 > MAX_UNROLLED_STEPS: 'auto' takes the fused kernel there, the scan at T = 4.
    x, g = _inputs((time_steps, 2, 37), seed=time_steps)
    kw = dict(thresholds=(0.6, 1.6, 2.6), tau=0.25, surrogate=triangle(1.0))
    _check(lambda x: mlf(x, impl=impl, **kw), lambda x: mlf(x, impl="scan", **kw), x, g)


@pytest.mark.parametrize("impl", ["auto", "fused", "pallas"])
def test_lif_impls_match_scan(impl):
    from mlf_jax.neurons import lif

    x, g = _inputs((6, 37), seed=11)
    kw = dict(threshold=0.8, tau=0.5, detach_reset=True)
    _check(lambda x: lif(x, impl=impl, **kw), lambda x: lif(x, impl="scan", **kw), x, g)


def test_auto_impl_choice():
    from mlf_jax.neurons import MAX_UNROLLED_STEPS, auto_impl

    for backend in ("cpu", "gpu", "tpu"):
        assert auto_impl(MAX_UNROLLED_STEPS, backend) == "scan"
        assert auto_impl(MAX_UNROLLED_STEPS + 1, backend) == "fused"


def test_unknown_impl_names_the_valid_ones():
    from mlf_jax.neurons import lif
    from mlf_jax.nn import MLF

    x = jnp.ones((3, 4), jnp.float32)
    match = r"unknown impl 'triton'.*'auto', 'scan', 'fused', 'pallas'"
    with pytest.raises(ValueError, match=match):
        mlf(x, impl="triton")
    with pytest.raises(ValueError, match=match):
        lif(x, impl="triton")
    with pytest.raises(ValueError, match=match):
        MLF(impl="triton").init(jax.random.key(0), x)


@pytest.mark.parametrize("time_steps", [3, 12])  # 'auto': the scan / the fused kernel
def test_pallas_impl_with_learned_thresholds_and_leak_falls_back_with_their_gradients(
    time_steps,
):
    x, g = _inputs((time_steps, 5), seed=time_steps)
    th, tau = jnp.array([0.6, 1.6]), jnp.float32(0.3)

    def loss(impl):
        def f(x, th, tau):
            return (mlf(x, thresholds=th, tau=tau, impl=impl) * g).sum()

        return jax.jit(jax.value_and_grad(f, argnums=(0, 1, 2)))

    value, grads = loss("pallas")(x, th, tau)
    ref_value, ref_grads = loss("scan")(x, th, tau)  # autodiff through the scan
    np.testing.assert_allclose(value, ref_value, rtol=1e-6)
    for got, want in zip(grads, ref_grads, strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    assert float(jnp.abs(grads[1]).sum()) > 0 and float(jnp.abs(grads[2])) > 0
    traced = str(jax.make_jaxpr(lambda x, th: mlf(x, thresholds=th, impl="pallas"))(x, th))
    static = str(jax.make_jaxpr(lambda x: mlf(x, thresholds=(0.6, 1.6), impl="pallas"))(x))
    assert "pallas_call" not in traced and "pallas_call" in static


def test_mlf_module_impls_agree():
    from mlf_jax.nn import MLF

    x, g = _inputs((4, 2, 37), seed=12)
    ref = MLF(impl="scan")
    for impl in ("fused", "pallas"):
        module = MLF(impl=impl)
        _check(lambda x, m=module: m.apply({}, x), lambda x: ref.apply({}, x), x, g)


def test_resnet_neuron_impl_is_passed_down():
    from mlf_jax import zoo
    from mlf_jax.models.resnet import ResNet

    kw = dict(stage_sizes=(1, 1), widths=(4, 8), num_classes=3, time_steps=2)
    x = jnp.asarray(np.random.default_rng(0).normal(size=(2, 4, 4, 3)), jnp.float32)

    def apply(impl):  # under jit: one compilation, not one per operation run eagerly
        return jax.jit(
            lambda v, x: ResNet(neuron=zoo.MLF(impl=impl), **kw).apply(v, x, train=False)
        )

    variables = jax.jit(lambda k, x: ResNet(**kw).init(k, x, train=False))(jax.random.key(0), x)
    outs = {impl: apply(impl)(variables, x) for impl in ("scan", "fused", "pallas")}
    np.testing.assert_allclose(np.asarray(outs["fused"]), np.asarray(outs["scan"]), atol=1e-6)
    np.testing.assert_allclose(np.asarray(outs["pallas"]), np.asarray(outs["scan"]), atol=1e-6)
    with pytest.raises(ValueError, match="unknown impl"):
        apply("bogus")(variables, x)


@pytest.mark.skipif(
    jax.default_backend() not in ("gpu", "tpu"),
    reason="the compiled kernels need a GPU or TPU (here: interpret mode only, tested above)",
)
@pytest.mark.parametrize("levels", [1, 3])
@pytest.mark.parametrize("shape", [(4, 1000), (40, 2, 16, 8, 8), (400, 4096)], ids=str)
def test_compiled_kernels_match_autodiff_on_the_accelerator(levels, shape):
    # The accelerator script runs this on the lent GPU: the same check as interpret mode,
    # on Mosaic GPU (or TPU) code; T = 400 takes several time blocks per program.
    x, g = _inputs(shape, seed=levels + len(shape))
    kw = dict(thresholds=THRESHOLDS[levels], tau=0.25)
    _check(
        lambda x: mlf_pallas(x, interpret=False, **kw),
        lambda x: mlf(x, impl="scan", **kw),
        x,
        g,
    )


def test_compiled_gpu_kernel_on_an_old_jax_is_refused_in_one_line(monkeypatch):
    from mlf_jax.kernels import pallas_mlf

    monkeypatch.setattr(pallas_mlf, "_NEW_KERNEL_API", False)  # as on jax 0.8
    x = jnp.ones((3, 4), jnp.float32)
    with pytest.raises(NotImplementedError, match="needs jax 0.10 or later"):
        mlf_pallas(x, platform="gpu", interpret=False)
    mlf_pallas(x, platform="gpu", interpret=True)  # interpret mode still runs
