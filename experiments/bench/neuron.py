"""The MLF neuron layer: forward and forward+backward time against a plain reference
and against the memory floor of this machine, measured in one run.

    python -m experiments.bench.neuron [--T 4 10 40] [--N 65536 262144 1048576]

- ``ours``: ``mlf_jax.neurons.mlf`` (levels as separate arrays, time loop per
  ``auto_unroll``);
- ``plain``: the straightforward version: ``lax.scan`` (rolled) over a step that
  vmaps LIF over the K thresholds, autodiff for the backward pass;
- ``fused``: ``mlf_jax.kernels.fused.mlf_fused`` (hand-written BPTT);
- ``pallas``: ``mlf(..., impl='pallas')``, on GPU and TPU only (on CPU Pallas runs in
  interpret mode, which is exact but says nothing about speed).

Every implementation's spikes and input gradient are compared with ``plain``'s
(columns ``max |dout|`` and ``max |dx|``): on an accelerator this is the check that
its kernels compute what the CPU tests pin.

Memory floor: the bytes that must move divided by the copy bandwidth measured
in the same run (``y = x + 1``): forward reads x and writes o (8 T N bytes);
forward+backward also reads the output cotangent and writes dx (16 T N bytes).
"""

from __future__ import annotations

import argparse

import jax
import jax.numpy as jnp
from jax import lax

import mlf_jax as mj
from experiments.allocator import allocator, reexec_with_jemalloc
from experiments.bench.common import copy_bandwidth, positive_int, time_compiled, write_json

THRESHOLDS = (0.6, 1.6, 2.6)


def plain_mlf(x: jax.Array) -> jax.Array:
    """The textbook implementation: scan over time, vmap of LIF over thresholds."""
    th = jnp.asarray(THRESHOLDS, x.dtype)
    sur = mj.rectangular(1.0)

    def step(state, xt):
        u, o = state
        u = 0.25 * u * (1.0 - o) + xt[None]
        o = mj.spike(u - th.reshape(-1, *([1] * xt.ndim)), sur)
        return (u, o), o.sum(0)

    init = (jnp.zeros((len(THRESHOLDS), *x.shape[1:])),) * 2
    return lax.scan(step, init, x)[1]


def implementations() -> dict:
    from mlf_jax.kernels.fused import mlf_fused

    impls = {
        "plain": plain_mlf,
        "ours": lambda x: mj.mlf(x, thresholds=THRESHOLDS),
        "fused": lambda x: mlf_fused(x, thresholds=THRESHOLDS),
    }
    if jax.default_backend() != "cpu":
        impls["pallas"] = lambda x: mj.mlf(x, thresholds=THRESHOLDS, impl="pallas")
    return impls


def _out_and_grad(f, x, g):
    out, vjp = jax.vjp(f, x)
    return out, vjp(g)[0]


def run(ts, ns, repeats, only=None) -> dict:
    # a copy long enough to time on an accelerator too (1 GiB there, 128 MiB on CPU)
    bandwidth = copy_bandwidth(2**25 if jax.default_backend() == "cpu" else 2**28)
    rows = []
    for t in ts:
        for n in ns:
            x = jax.random.uniform(jax.random.key(0), (t, n), maxval=3.0)
            g = jax.random.normal(jax.random.key(1), (t, n))
            floor_fwd = 8 * t * n / bandwidth
            floor_bwd = 16 * t * n / bandwidth
            reference = None
            for name, f in implementations().items():
                if only and name not in only:
                    continue
                out, dx = jax.jit(lambda x, g, f=f: _out_and_grad(f, x, g))(x, g)
                if reference is None:
                    reference = (out, dx)
                d_out = float(jnp.max(jnp.abs(out - reference[0])))
                d_x = float(jnp.max(jnp.abs(dx - reference[1])))
                c_f, fwd = time_compiled(f, x, repeats=repeats)

                def fwd_bwd(x, g, f=f):
                    return jax.vjp(f, x)[1](g)[0]

                c_b, both = time_compiled(fwd_bwd, x, g, repeats=repeats)
                temp = jax.jit(fwd_bwd).lower(x, g).compile().memory_analysis().temp_size_in_bytes
                rows.append(
                    {
                        "impl": name, "T": t, "N": n,
                        "forward_s": fwd, "forward_backward_s": both,
                        "compile_forward_s": c_f, "compile_forward_backward_s": c_b,
                        "floor_forward_s": floor_fwd, "floor_forward_backward_s": floor_bwd,
                        "forward_backward_over_floor": both / floor_bwd,
                        "forward_backward_temp_bytes": temp,
                        "max_abs_diff_out": d_out, "max_abs_diff_dx": d_x,
                    }
                )  # fmt: skip
                print(
                    f"{name:<6}{t:>4}{n:>9}{fwd * 1e3:>10.2f}{both * 1e3:>10.2f}"
                    f"{floor_bwd * 1e3:>10.2f}{both / floor_bwd:>8.1f}x{temp / 2**20:>10.1f}"
                    f"{d_out:>10.1e}{d_x:>10.1e}",
                    flush=True,
                )
    return {
        "allocator": allocator(),
        "backend": jax.default_backend(),
        "devices": str(jax.devices()),
        "copy_bandwidth_bytes_per_s": bandwidth,
        "rows": rows,
    }


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--T", type=positive_int, nargs="+", default=[4, 10, 40])
    parser.add_argument("--N", type=positive_int, nargs="+", default=[2**16, 2**18, 2**20])
    parser.add_argument("--repeats", type=positive_int, default=5)
    parser.add_argument("--impls", nargs="+", default=None,
                        choices=["plain", "ours", "fused", "pallas"])  # fmt: skip
    parser.add_argument("--out", default="experiments/bench/results/neuron.json")
    args = parser.parse_args(argv)
    print(
        f"{'impl':<6}{'T':>4}{'N':>9}{'fwd ms':>10}{'f+b ms':>10}{'floor ms':>10}{'ratio':>9}"
        f"{'temp MiB':>10}{'max|dout|':>10}{'max|dx|':>10}"
    )
    result = run(args.T, args.N, args.repeats, args.impls)
    print(f"copy bandwidth: {result['copy_bandwidth_bytes_per_s'] / 1e9:.2f} GB/s")
    write_json(args.out, result)


if __name__ == "__main__":
    reexec_with_jemalloc()
    main()
