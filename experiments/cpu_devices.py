"""Every CPU core busy: one JAX CPU device per core, batches split between them.

XLA:CPU runs one device's program mostly on one thread: its convolutions and matrix
products use several cores, but the elementwise fusions, the neuron loops and the
scheduling between operations run one after another. With one *device* per core,
data parallelism (the same ``shard_map`` train step that runs on GPUs and TPU pods)
keeps every core busy for the whole step. The numbers are the data-parallel ones:
the same global batch, the gradients and the tdBN statistics summed over devices,
tested equal to one device within float32 rounding.

:func:`use_every_core` is called by the command-line entry points before JAX starts
its backend. It picks the largest device count, at most the number of cores this
process may run on, that divides every given batch size. ``MLF_JAX_CPU_DEVICES``
overrides it: ``1`` turns it off (one CPU device, as plain JAX), an integer asks for
that many. An explicit ``XLA_FLAGS=--xla_force_host_platform_device_count=N`` or
``jax.config.update('jax_num_cpu_devices', N)`` is left alone, and so is a process
that JAX's backend has already started in. Only the CPU backend is affected: on a
GPU or TPU host the accelerators stay the devices.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import jax

__all__ = ["ENV_VAR", "core_count", "device_count_for", "use_every_core"]

#: ``all`` (default), or the number of CPU devices (``1``: off).
ENV_VAR = "MLF_JAX_CPU_DEVICES"


def core_count() -> int:
    """Cores this process may run on (its CPU affinity, else ``os.cpu_count()``)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def device_count_for(cores: int, batch_sizes: Sequence[int]) -> int:
    """The largest ``n <= cores`` that divides every batch size (1 if none is given)."""
    sizes = [b for b in batch_sizes if b > 0]
    return max(n for n in range(1, max(cores, 1) + 1) if all(b % n == 0 for b in sizes))


def _requested() -> int | None:
    """``MLF_JAX_CPU_DEVICES`` as an int, or ``None`` for ``all``/unset."""
    text = os.environ.get(ENV_VAR, "all").strip().lower()
    if text in ("", "all"):
        return None
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise ValueError(f"{ENV_VAR} must be 'all' or an integer >= 1, got {text!r}")
    return value


def _already_chosen() -> bool:
    """Whether the CPU device count was set by the user (XLA flag or JAX config)."""
    return (
        "xla_force_host_platform_device_count" in os.environ.get("XLA_FLAGS", "")
        or jax.config.jax_num_cpu_devices != -1
    )


def use_every_core(batch_sizes: Sequence[int] = ()) -> int | None:
    """Gives JAX one CPU device per core (see the module docstring).

    Args:
      batch_sizes: global batch sizes that must split evenly over the devices.

    Returns:
      The CPU device count set, or ``None`` when the choice was left to JAX (already
      made, or the backend already started).

    Raises:
      ValueError: ``MLF_JAX_CPU_DEVICES`` is neither ``all`` nor a positive integer.
    """
    requested = _requested()
    if _already_chosen():
        return None
    n = requested if requested is not None else device_count_for(core_count(), batch_sizes)
    try:
        jax.config.update("jax_num_cpu_devices", n)
    except RuntimeError:  # JAX refuses it once its backend has started (its public rule)
        return None
    return n
