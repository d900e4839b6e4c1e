"""Multi-host start-up: ``jax.distributed.initialize`` from a config or the environment."""

from __future__ import annotations

import os

import jax

__all__ = ["initialize"]

_ENV = {
    "coordinator_address": "MLF_JAX_COORDINATOR",
    "num_processes": "MLF_JAX_NUM_PROCESSES",
    "process_id": "MLF_JAX_PROCESS_ID",
}


def initialize(
    coordinator_address: str | None = None,
    num_processes: int | None = None,
    process_id: int | None = None,
    *,
    auto: bool = False,
    cpu_collectives: str = "gloo",
) -> bool:
    """Starts JAX's multi-process runtime when asked to; returns whether it did.

    Explicit arguments win, then the environment variables
    ``MLF_JAX_COORDINATOR``, ``MLF_JAX_NUM_PROCESSES``, ``MLF_JAX_PROCESS_ID``.
    With none of them and ``auto=True``, ``jax.distributed.initialize()`` detects
    the cluster itself (TPU pods, SLURM, ...). On CPU, collectives across
    processes use ``cpu_collectives`` (gloo).

    Raises:
      ValueError: when only some of the three settings are given.
    """
    values = {
        "coordinator_address": coordinator_address or os.environ.get(_ENV["coordinator_address"]),
        "num_processes": num_processes or os.environ.get(_ENV["num_processes"]),
        "process_id": process_id
        if process_id is not None and process_id >= 0
        else os.environ.get(_ENV["process_id"]),
    }
    given = {k for k, v in values.items() if v not in (None, "", 0)}
    if values["process_id"] in (0, "0"):
        given.add("process_id")
    if given and given != set(values):
        missing = sorted(set(values) - given)
        raise ValueError(
            f"multi-host needs coordinator_address, num_processes and process_id together; "
            f"missing {missing} (set them in the config's `distributed` block or as "
            f"{', '.join(_ENV[m] for m in missing)})"
        )
    if not given and not auto:
        return False
    jax.config.update("jax_cpu_collectives_implementation", cpu_collectives)
    if given:
        jax.distributed.initialize(
            coordinator_address=str(values["coordinator_address"]),
            num_processes=int(values["num_processes"]),
            process_id=int(values["process_id"]),
        )
    else:
        jax.distributed.initialize()
    return True
