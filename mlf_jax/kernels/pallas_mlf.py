"""Pallas kernels for the fused multi-level firing (MLF) neuron, forward and backward.

Same semantics as :func:`mlf_jax.neurons.mlf`. Input ``x[T, N]``;
K levels with thresholds ``th_1 < ... < th_K``; per level::

    u_k[t] = tau * u_k[t-1] * (1 - o_k[t-1]) + x[t]      u_k[-1] = o_k[-1] = 0
    o_k[t] = H(u_k[t] - th_k)                            H(z) = 1[z > 0]
    o[t]   = sum_k o_k[t]

Backward (BPTT derived by hand, checked against ``jax.grad`` through
:func:`mlf_jax.neurons.mlf`), with ``g[t] = dL/do[t]``, ``s[t]`` the surrogate
derivative at ``u_k[t] - th_k`` and ``delta[t] = dL/du_k[t]``::

    delta[t] = s[t] * (g[t] - tau * u[t] * delta[t+1] * [not detach_reset])
               + tau * (1 - o[t]) * delta[t+1],                 delta[T] = 0
    dL/dx[t] = sum_k delta_k[t]

Layout: x is flattened to ``[T, N]``, N padded with zeros to a multiple of 1024
and viewed as ``[T, N / 128, 128]``. Blocks of ``rows x 128`` units are independent
programs; each runs through its time blocks in order (backward: in reverse), looping
over the time steps of a block (``lax.fori_loop``) and handing the K potentials
(forward) or the K ``delta[t+1]`` (backward) to the next time block in scratch
memory. The forward kernel writes the spike counts and the K potentials ``u_k`` (the
only residuals); the backward kernel recomputes spikes and surrogate derivatives from
them and writes ``dx``.

Per platform (see :func:`_plan`), chosen when lowering through ``lax.platform_dependent``:

* CUDA: Mosaic GPU, through its own entry points (``plgpu.kernel``: one program per
  block of rows; ``plgpu.emit_pipeline``: its time blocks copied into shared memory and
  the results back). Mosaic GPU's custom call is the one ``jax.export`` accepts
  (Triton's is not covered by its compatibility guarantees); ``pl.pallas_call`` no
  longer lowers to Mosaic GPU since jax 0.11. 2 rows (256 units) per program and as many
  time steps as fit in 160 KiB of shared memory (an H100/H200 block has 232,448 bytes).
  Lowers with jax 0.10 and later (tested: 0.10.2, 0.11.2, 0.12); jax 0.8's Mosaic GPU
  lacks some of the operations, so there ``mlf_pallas`` refuses the GPU in one line, and an
  export for CUDA from another host gets the interpret-mode kernel (no CUDA branch).
* TPU: ``pl.pallas_call`` on Mosaic TPU, grid ``(row blocks, time blocks)`` with the
  time axis sequential, blocks ``(steps, 8k, 128)`` (the last two dims multiples of
  (8, 128) for float32), at most 32 rows, double-buffered within 8 MiB of VMEM.
* CPU: ``pl.pallas_call`` in interpret mode with the TPU blocks (``platform='gpu'`` with
  ``interpret=True``: the same with the GPU blocks).

Status: run and checked against autodiff through :func:`mlf_jax.neurons.mlf` in
interpret mode on CPU only. The compiled kernels lower (``jax.export`` for
``cuda`` and ``tpu``, forward and backward; ``tests/kernels/test_export_kernels.py``)
but have never been compiled on or run on a GPU or TPU; Mosaic TPU checks its
tiling rules and Mosaic GPU its layouts in full only there. The compiled GPU kernel's
pipeline is not run here: Mosaic GPU's interpret mode does not take its predicated
copies.
"""

from __future__ import annotations

import functools
import inspect
import math
import operator
from collections.abc import Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax import lax
from jax.experimental import pallas as pl
from jax.experimental.pallas import mosaic_gpu as plgpu
from jax.experimental.pallas import tpu as pltpu

from mlf_jax.checks import as_thresholds, check_sequence_input, check_tau
from mlf_jax.surrogate import Surrogate, get_surrogate, heaviside, rectangular
from mlf_jax.thresholds import DEFAULT_THRESHOLDS

__all__ = ["mlf_pallas", "LANES", "PLATFORMS"]

Array = jax.Array

#: Units per row of the ``[T, M, LANES]`` layout the kernels work on (TPU lane width).
LANES = 128
#: N is padded to a multiple of this (8 rows of 128 lanes: one float32 TPU tile).
_PAD_UNITS = 8 * LANES
#: Kernel variants, one per platform: ``'gpu'`` (Mosaic GPU), ``'tpu'`` (Mosaic TPU),
#: ``'cpu'`` (Pallas interpret mode, same blocks as ``'tpu'``).
PLATFORMS = ("gpu", "tpu", "cpu")

#: Shared memory one Mosaic GPU program may use for its blocks (H100/H200 allow
#: 227 KiB = 232,448 bytes per block; kept below that for Mosaic's own reservations).
_GPU_SMEM_BUDGET = 160 * 1024
#: VMEM for the double-buffered blocks of one TPU program (the scoped VMEM default
#: is 16 MiB on v5e and 32 MiB on v4/v6e; this leaves room for the rest).
_TPU_VMEM_BUDGET = 8 * 1024 * 1024
#: Rows of ``LANES`` units per program: GPU 2 rows (256 units: two values per thread
#: of the 128-thread warpgroup, and many programs for small layers), TPU at most 32
#: rows (four vregs per value: the loop-carried state of K = 3 levels fits in the
#: 64 vector registers).
_GPU_ROWS = 2
_TPU_MAX_ROWS = 32


class _Plan(NamedTuple):
    """Block arrangement of one kernel call: ``rows`` x ``LANES`` units and ``steps``
    time steps per program; grid ``(M // rows, T // steps)``, time axis sequential."""

    rows: int
    steps: int
    scratch: object  # memory space of the carried state
    compiler_params: object


def _largest_divisor(n: int, at_most: int, multiple_of: int = 1) -> int:
    """Largest ``d`` dividing ``n`` with ``d <= at_most`` and ``d % multiple_of == 0``
    (``multiple_of`` itself when none is smaller, ``n`` a multiple of it)."""
    best = multiple_of
    for d in range(multiple_of, min(n, at_most) + 1, multiple_of):
        if n % d == 0:
            best = d
    return best


def _plan(platform, m, time_steps, arrays, itemsize, rows=None, steps=None) -> _Plan:
    """Blocks for ``arrays`` arrays ``[T, M, LANES]`` (inputs and outputs together).

    GPU (Mosaic GPU, ``plgpu.emit_pipeline`` stages every block in shared memory, one
    buffer each): ``_GPU_ROWS`` rows and as many time steps (a divisor of T) as fit
    in ``_GPU_SMEM_BUDGET``. TPU and interpret mode (Mosaic TPU double-buffers each
    block in VMEM): up to ``_TPU_MAX_ROWS`` rows (a multiple of 8 dividing M, so the
    last two block dims are multiples of (8, 128)) and as many time steps as fit in
    ``_TPU_VMEM_BUDGET``. ``rows`` / ``steps`` override the choice (tests).
    """
    if platform == "gpu":
        rows = rows or _largest_divisor(m, _GPU_ROWS)
        per_step = arrays * rows * LANES * itemsize
        budget, scratch = _GPU_SMEM_BUDGET, plgpu.SMEM
        params = plgpu.CompilerParams()
    else:
        rows = rows or _largest_divisor(m, _TPU_MAX_ROWS, 8)
        per_step = 2 * arrays * rows * LANES * itemsize
        budget, scratch = _TPU_VMEM_BUDGET, pltpu.VMEM  # type: ignore[assignment]
        params = None
        if platform == "tpu":
            params = pltpu.CompilerParams(  # type: ignore[assignment]
                dimension_semantics=("parallel", "arbitrary")
            )
    if m % rows:
        raise ValueError(f"rows per block ({rows}) must divide the {m} rows of {LANES} units")
    steps = steps or _largest_divisor(time_steps, max(1, budget // per_step))
    if time_steps % steps:
        raise ValueError(f"time_block ({steps}) must divide T = {time_steps}")
    return _Plan(rows, steps, scratch, params)


def _forward_steps(x_ref, o_ref, u_refs, us, *, thresholds, tau, steps):
    """``steps`` forward time steps of one block from potentials ``us``; returns the last."""
    levels = len(thresholds)

    def body(t, carry):
        us, os = carry
        xt = x_ref[t]
        # Same expression (and order of operations) as neurons.lif_step.
        new_u = tuple(tau * us[k] * (1.0 - os[k]) + xt for k in range(levels))
        new_o = tuple(heaviside(new_u[k] - thresholds[k]) for k in range(levels))
        o_ref[t] = functools.reduce(operator.add, new_o).astype(o_ref.dtype)
        for k in range(levels):
            u_refs[k][t] = new_u[k].astype(u_refs[k].dtype)
        return new_u, new_o

    # The spikes of the previous step, recomputed from its potentials (o = H(u - th)).
    os = tuple(heaviside(us[k] - thresholds[k]) for k in range(levels))
    return lax.fori_loop(0, steps, body, (tuple(us), os))[0]


def _backward_steps(g_ref, u_refs, dx_ref, deltas, *, thresholds, tau, surrogate, detach_reset,
                    steps):  # fmt: skip
    """``steps`` backward time steps of one block, last first, from ``delta[t+1]`` =
    ``deltas``; returns the block's first ``delta``."""
    levels = len(thresholds)

    def body(i, deltas):
        t = steps - 1 - i
        gt = g_ref[t]
        new_deltas = []
        for k in range(levels):
            ut = u_refs[k][t]
            z = ut - thresholds[k]
            s = surrogate.grad(z).astype(ut.dtype)
            o = heaviside(z)
            do = gt if detach_reset else gt - tau * ut * deltas[k]
            new_deltas.append(s * do + tau * (1.0 - o) * deltas[k])
        dx_ref[t] = functools.reduce(operator.add, new_deltas).astype(dx_ref.dtype)
        return tuple(new_deltas)

    return lax.fori_loop(0, steps, body, tuple(deltas))


def _run_forward(refs, carry, *, levels, **kw):
    x_ref, o_ref, *u_refs = refs[: 2 + levels]
    return _forward_steps(x_ref, o_ref, u_refs, carry, **kw)


def _run_backward(refs, carry, *, levels, **kw):
    g_ref, *rest = refs[: 2 + levels]
    u_refs, dx_ref = rest[:levels], rest[levels]
    return _backward_steps(g_ref, u_refs, dx_ref, carry, **kw)


def _scratch_kernel(*refs, run, levels):
    """A ``pallas_call`` kernel (TPU, interpret mode): ``run`` over this program's time
    block, the K carried values in scratch, zeroed at the first time block."""
    carry_refs = refs[-levels:]

    @pl.when(pl.program_id(1) == 0)
    def _():
        for ref in carry_refs:
            ref[...] = jnp.zeros(ref.shape, ref.dtype)

    carry = run(refs[:-levels], tuple(ref[...] for ref in carry_refs))
    for ref, value in zip(carry_refs, carry, strict=True):
        ref[...] = value


def _call(run, inputs, n_out, levels, platform, interpret, reverse, rows, steps, name):
    """``run`` over ``[T, M, LANES]`` arrays, blocks per ``_plan``: ``plgpu.kernel`` with a
    pipeline over the time blocks for compiled GPU kernels, ``pallas_call`` otherwise."""
    time_steps, m, _ = inputs[0].shape
    dtype = inputs[0].dtype
    plan = _plan(
        platform, m, time_steps, len(inputs) + n_out, dtype.itemsize, rows=rows, steps=steps
    )
    time_blocks = time_steps // plan.steps
    run = functools.partial(run, levels=levels, steps=plan.steps)
    shape = jax.ShapeDtypeStruct(inputs[0].shape, dtype)

    def time_block(j):
        return time_blocks - 1 - j if reverse else j

    if platform == "gpu" and not interpret:
        return _call_mosaic_gpu(run, inputs, n_out, levels, plan, time_blocks, time_block)

    spec = pl.BlockSpec((plan.steps, plan.rows, LANES), lambda i, j: (time_block(j), i, 0))
    return pl.pallas_call(
        functools.partial(_scratch_kernel, run=run, levels=levels),
        out_shape=(shape,) * n_out,
        grid=(m // plan.rows, time_blocks),
        in_specs=[spec] * len(inputs),
        out_specs=(spec,) * n_out,
        scratch_shapes=[plan.scratch((plan.rows, LANES), dtype)] * levels,
        compiler_params=None if interpret else plan.compiler_params,
        interpret=interpret,
        name=name,
    )(*inputs)


#: ``plgpu.kernel``'s names for the output and scratch types: ``out_type`` and
#: ``scratch_types`` in current JAX (0.10 and later), ``out_shape`` and ``scratch_shapes`` in
#: jax 0.8, whose Mosaic GPU cannot lower the kernel (see :func:`mlf_pallas`).
_NEW_KERNEL_API = "out_type" in inspect.signature(plgpu.kernel).parameters
_KERNEL_OUT, _KERNEL_SCRATCH = (
    ("out_type", "scratch_types") if _NEW_KERNEL_API else ("out_shape", "scratch_shapes")
)


def _call_mosaic_gpu(run, inputs, n_out, levels, plan, time_blocks, time_block):
    """The compiled GPU kernel: one Mosaic GPU program (``plgpu.kernel``) per block of
    ``plan.rows`` rows, each running a pipeline (``plgpu.emit_pipeline``) over its time
    blocks that copies each block into shared memory and the results back; the K
    carried values wait in shared memory from one time block to the next."""
    shape = jax.ShapeDtypeStruct(inputs[0].shape, inputs[0].dtype)

    def program(*refs):
        refs, carry_refs = refs[:-levels], refs[-levels:]
        for ref in carry_refs:
            ref[...] = jnp.zeros(ref.shape, ref.dtype)
        row = lax.axis_index("rows")
        spec = pl.BlockSpec((plan.steps, plan.rows, LANES), lambda j: (time_block(j), row, 0))

        def step(_, *block_refs):
            carry = run(block_refs, tuple(ref[...] for ref in carry_refs))
            for ref, value in zip(carry_refs, carry, strict=True):
                ref[...] = value

        plgpu.emit_pipeline(
            step, grid=(time_blocks,), in_specs=[spec] * len(inputs), out_specs=[spec] * n_out
        )(*refs)

    kernel = plgpu.kernel(
        program,
        **{
            _KERNEL_OUT: (shape,) * n_out,
            _KERNEL_SCRATCH: [plan.scratch((plan.rows, LANES), shape.dtype)] * levels,
        },
        grid=(shape.shape[1] // plan.rows,),
        grid_names=("rows",),
        compiler_params=plan.compiler_params,
    )
    return kernel(*inputs)


def _per_platform(fn, args, platform, interpret):
    """``fn(*args, platform=...)`` for ``platform``, or, when it is None, chosen when
    lowering (``lax.platform_dependent``): the GPU kernel for CUDA, the TPU kernel for
    TPU, interpret mode with the TPU blocks elsewhere (CPU)."""
    if platform is not None:
        return fn(*args, platform=platform, interpret=interpret)
    # (before plgpu.kernel's current API, no CUDA branch: every branch is traced)
    cuda = {"cuda": functools.partial(fn, platform="gpu", interpret=interpret)}
    return lax.platform_dependent(
        *args,
        **(cuda if _NEW_KERNEL_API else {}),
        tpu=functools.partial(fn, platform="tpu", interpret=interpret),
        default=functools.partial(fn, platform="cpu", interpret=True),
    )


def _forward(x, thresholds, tau, platform, interpret, rows, steps):
    """``x[T, M, LANES]`` -> spike counts and the K potentials (all ``[T, M, LANES]``)."""
    run = functools.partial(_run_forward, thresholds=thresholds, tau=tau)
    levels = len(thresholds)

    def call(x, *, platform, interpret):
        return _call(
            run, (x,), 1 + levels, levels, platform, interpret, False, rows, steps, "mlf_forward"
        )

    out = _per_platform(call, (x,), platform, interpret)
    return out[0], tuple(out[1:])


def _backward(g, us, thresholds, tau, surrogate, detach_reset, platform, interpret, rows, steps):
    """Cotangent ``g`` of the spike counts and the potentials -> ``dx`` (``[T, M, LANES]``)."""
    run = functools.partial(
        _run_backward,
        thresholds=thresholds,
        tau=tau,
        surrogate=surrogate,
        detach_reset=detach_reset,
    )
    levels = len(thresholds)

    def call(g, *us, platform, interpret):
        return _call(
            run, (g, *us), 1, levels, platform, interpret, True, rows, steps, "mlf_backward"
        )[0]

    return _per_platform(call, (g, *us), platform, interpret)


@functools.partial(jax.custom_vjp, nondiff_argnums=(1, 2, 3, 4, 5, 6, 7, 8))
def _mlf(x, thresholds, tau, surrogate, detach_reset, platform, interpret, rows, steps):
    return _forward(x, thresholds, tau, platform, interpret, rows, steps)[0]


def _mlf_fwd(x, thresholds, tau, surrogate, detach_reset, platform, interpret, rows, steps):
    return _forward(x, thresholds, tau, platform, interpret, rows, steps)


def _mlf_bwd(thresholds, tau, surrogate, detach_reset, platform, interpret, rows, steps, us, g):
    args = (thresholds, tau, surrogate, detach_reset, platform, interpret, rows, steps)
    return (_backward(g, us, *args),)


_mlf.defvjp(_mlf_fwd, _mlf_bwd)


def _static_float(name: str, value) -> float:
    try:
        return float(value)
    except (TypeError, jax.errors.ConcretizationTypeError):
        raise TypeError(
            f"mlf_pallas needs {name} as static Python floats (they are baked into the "
            f"kernel), got {value!r}"
        ) from None


def mlf_pallas(
    x: Array,
    *,
    thresholds: Sequence[float] = DEFAULT_THRESHOLDS,
    tau: float = 0.25,
    width: float = 1.0,
    detach_reset: bool = False,
    surrogate: Surrogate | str | None = None,
    block: int | None = None,
    time_block: int | None = None,
    platform: str | None = None,
    interpret: bool | None = None,
) -> Array:
    """:func:`mlf_jax.neurons.mlf` as two Pallas kernels (forward and hand-written backward).

    Args:
      x: input current ``[T, ...]`` (time-major, any trailing shape, floating; tested
        with float32, lowering also checked for bfloat16). Flattened to ``[T, N]``,
        N padded to a multiple of 1024 and viewed as ``[T, N / 128, 128]``.
      thresholds: K strictly increasing thresholds, static Python floats.
      tau: leak factor in ``[0, 1]``, a static Python float.
      width: width ``a`` of the paper's rectangular surrogate ``(1/a) 1[|z| < a/2]``;
        used when ``surrogate`` is None.
      detach_reset: stop the gradient through the reset term.
      surrogate: any :mod:`mlf_jax.surrogate` family (instance or name), overriding
        ``width``; its ``grad`` is evaluated inside the backward kernel.
      block: units per program, a multiple of 128 (N is then padded to a multiple
        of it and of 1024). ``None``: per platform (see the module docstring).
      time_block: time steps per program, a divisor of T. ``None``: per platform,
        as many as fit in shared memory (GPU) or VMEM (TPU).
      platform: kernel variant, one of :data:`PLATFORMS` (``'gpu'``: blocks for
        Mosaic GPU; ``'tpu'``: Mosaic TPU; ``'cpu'``: the TPU blocks, for interpret
        mode). ``None``: chosen when lowering with ``lax.platform_dependent`` (CUDA ->
        ``'gpu'``, TPU -> ``'tpu'``, anything else -> ``'cpu'`` in interpret mode), so
        that ``jax.export`` for ``platforms=['cuda']`` gets the GPU kernel even on a
        CPU host.
      interpret: run the kernels in Pallas interpret mode. ``None``: interpret mode
        when the default backend is CPU, compiled otherwise (with ``platform=None``
        the CPU branch always interprets). Only interpret mode has been run; the
        compiled kernels have been lowered (``jax.export``) but never executed.

    Returns:
      Spike counts ``[T, ...]`` in ``0..K``, dtype of ``x``. Differentiable with
      respect to ``x`` only: ``thresholds``, ``tau`` and ``width`` are static
      constants baked into the kernels and get no gradient (use
      :func:`mlf_jax.neurons.mlf` or :func:`mlf_jax.kernels.fused.mlf_fused` to
      learn them).

    Raises:
      TypeError: for traced thresholds or tau.
      ValueError: for bad thresholds, tau, block sizes or platform.
      NotImplementedError: for the compiled GPU kernel on a jax older than 0.10.
    """
    x = check_sequence_input(x, "mlf_pallas")
    if isinstance(thresholds, (int, float)):
        raise ValueError("thresholds must be a non-empty 1-D sequence (one per level)")
    traced = isinstance(thresholds, jax.core.Tracer) or isinstance(tau, jax.core.Tracer)
    if traced or any(isinstance(v, jax.core.Tracer) for v in thresholds):
        raise TypeError(
            "mlf_pallas needs thresholds and tau as static Python floats (they are baked "
            "into the kernel); use mlf_jax.neurons.mlf to differentiate with respect to them"
        )
    check_tau(tau)
    as_thresholds(thresholds, x.dtype)  # validation: 1-D, finite, strictly increasing
    th = tuple(_static_float("thresholds", v) for v in thresholds)
    tau = _static_float("tau", tau)
    surrogate = rectangular(float(width)) if surrogate is None else get_surrogate(surrogate)
    if block is not None and (
        isinstance(block, bool) or not isinstance(block, int) or block < 1 or block % LANES
    ):
        raise ValueError(f"block must be a positive multiple of {LANES}, got {block!r}")
    if time_block is not None and (
        isinstance(time_block, bool) or not isinstance(time_block, int) or time_block < 1
    ):
        raise ValueError(f"time_block must be a positive integer, got {time_block!r}")
    if platform is not None and platform not in PLATFORMS:
        raise ValueError(f"unknown platform {platform!r}; expected one of {PLATFORMS} or None")
    if interpret is None:
        interpret = jax.default_backend() == "cpu"
    on_gpu = platform == "gpu" or (platform is None and jax.default_backend() == "gpu")
    if on_gpu and not interpret and not _NEW_KERNEL_API:
        raise NotImplementedError(
            f"the compiled GPU kernel of mlf_pallas needs jax 0.10 or later (this is jax "
            f"{jax.__version__}); use impl='fused' (or 'scan'), or interpret=True"
        )
    shape = x.shape
    n = math.prod(shape[1:])
    if shape[0] == 0 or n == 0:
        return jnp.zeros_like(x)
    if time_block is not None and shape[0] % time_block:
        raise ValueError(f"time_block ({time_block}) must divide T = {shape[0]}")
    unit = math.lcm(_PAD_UNITS, block or _PAD_UNITS)
    n_pad = -(-n // unit) * unit
    x2 = x.reshape(shape[0], n)
    if n_pad != n:
        x2 = jnp.pad(x2, ((0, 0), (0, n_pad - n)))
    rows = None if block is None else block // LANES
    args = (th, tau, surrogate, bool(detach_reset), platform, bool(interpret), rows, time_block)
    out = _mlf(x2.reshape(shape[0], n_pad // LANES, LANES), *args)
    return out.reshape(shape[0], n_pad)[:, :n].reshape(shape)
