"""The dry run of a config: build data, model and the data-parallel steps, compile one
train and one eval step, print what a launch would use, and train nothing.

    python -m experiments.train --config=... --workdir=... --dry_run
"""

from __future__ import annotations

import time
from typing import Any

import jax
import numpy as np

import mlf_jax as mj
from experiments import input_pipeline
from experiments.trainer import Run, check_run

__all__ = ["dry_run"]


def compile_steps(run: Run) -> dict[str, Any]:
    """Compiles ``run``'s train and eval steps for the real shapes (running nothing);
    their compile times and per-device memory figures."""
    dstate = run.dp.put_state(run.state)
    take = np.arange(run.local_batch) % len(run.data.train)
    batch = run.data.preprocess(run.data.train[take], True)
    eval_bs = mj.train.evaluation.local_eval_batch(
        run.config.eval_batch_size, len(run.dp.local_devices)
    )
    test = run.data.preprocess(run.data.test[np.arange(1)], False)
    eval_batch = mj.train.pad_batch(test, eval_bs)
    out = {}
    for name, lower, b in (
        ("train_step", run.dp.lower_train_step, batch),
        ("eval_step", run.dp.lower_eval_step, eval_batch),
    ):
        start = time.time()
        compiled = lower(dstate, b).compile()
        out[name] = {"compile_seconds": time.time() - start, **_memory(compiled)}
    out["eval_batch_per_process"] = eval_bs
    return out


def _memory(compiled: Any) -> dict[str, int | None]:
    """Per-device byte counts of a compiled step, from XLA's buffer assignment
    (``compiled.memory_analysis()``; ``None`` where the backend gives none).

    ``argument``, ``output``, ``temp``: XLA's ``*_size_in_bytes``; ``alias``: the outputs
    written in place of (donated) arguments, the train step's state; ``total``: what the
    step holds while it runs, ``argument + output - alias + temp`` (XLA allocates the
    temporaries as one block). XLA's ``peak_memory_in_bytes`` is left out: XLA:CPU computes
    it from the arguments and outputs alone, without the temporaries.
    """
    stats = compiled.memory_analysis()
    names = ("argument", "output", "alias", "temp", "generated_code")
    out = {f"{n}_bytes": getattr(stats, f"{n}_size_in_bytes", None) for n in names}
    a, o, al, t = (out[f"{n}_bytes"] for n in ("argument", "output", "alias", "temp"))
    out["total_bytes"] = None
    if a is not None and o is not None and al is not None and t is not None:
        out["total_bytes"] = a + o - al + t
    return out


def _mb(n: int | None) -> str:
    return "n/a" if n is None else f"{n / 2**20:,.1f} MiB"


def dry_run(
    config: Any, *, data: input_pipeline.Data | None = None, model: Any = None
) -> dict[str, Any]:
    """Builds data, model and the data-parallel steps of ``config``, compiles one train and
    one eval step, prints what a launch would use, and trains nothing.

    Touches no work directory. Use it to check a config for a pod on a CPU with as many
    fake devices (``XLA_FLAGS=--xla_force_host_platform_device_count=N``).

    Returns:
      The figures printed: devices, batches, parameters, compile times and per-device
      memory of both steps (``compiled.memory_analysis()``: see :func:`_memory`).
    """
    config, model = check_run(config, model)  # a config, or one checked before JAX started
    data = data if data is not None else input_pipeline.get_datasets(config)
    run = Run(config, data, model)
    params = jax.tree.leaves(run.state.params)
    figures = {
        "processes": jax.process_count(),
        "devices": jax.device_count(),
        "parallel": config.parallel,
        "global_batch": config.batch_size,
        "per_device_batch": config.batch_size // jax.device_count(),
        "steps_per_epoch": run.steps_per_epoch,
        "num_params": mj.models.num_params(params),
        "param_bytes": sum(int(p.nbytes) for p in params),
        **compile_steps(run),
    }
    if jax.process_index() == 0:
        f = figures
        print(
            f"dry run of {config.dataset}: {f['devices']} devices in {f['processes']} "
            f"process(es), {f['parallel']}\n"
            f"  train batch {f['global_batch']} = {f['per_device_batch']} per device, "
            f"{f['steps_per_epoch']} steps per epoch; eval batch {config.eval_batch_size} "
            f"-> {f['eval_batch_per_process'] * f['processes']} "
            f"({f['eval_batch_per_process'] // len(run.dp.local_devices)} per device)\n"
            f"  parameters: {f['num_params']:,} ({_mb(f['param_bytes'])})"
        )
        for name in ("train_step", "eval_step"):
            m = f[name]
            print(
                f"  {name}: compiled in {m['compile_seconds']:.1f} s; per device: arguments "
                f"{_mb(m['argument_bytes'])}, outputs {_mb(m['output_bytes'])} "
                f"({_mb(m['alias_bytes'])} of them written over donated arguments), "
                f"temporaries {_mb(m['temp_bytes'])}: {_mb(m['total_bytes'])} in all while "
                "it runs"
            )
    return figures
