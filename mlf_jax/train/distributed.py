"""Multi-host start-up: ``jax.distributed.initialize`` from a config or the environment."""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import jax

from mlf_jax.train._notice import notice

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
    timeout_seconds: int = 300,
    notify: Callable[[str], None] = notice,
) -> bool:
    """Starts JAX's multi-process runtime when asked to; returns whether it did.

    Explicit arguments win, then the environment variables
    ``MLF_JAX_COORDINATOR``, ``MLF_JAX_NUM_PROCESSES``, ``MLF_JAX_PROCESS_ID``.
    With none of them and ``auto=True``, ``jax.distributed.initialize()`` detects
    the cluster itself (TPU pods, SLURM, ...). On CPU, collectives across
    processes use ``cpu_collectives`` (gloo).

    It says (``notify``, default stderr) which coordinator and how many processes it
    waits for; if they are not all there within ``timeout_seconds``, it prints one line
    saying so and ends the process with exit code 1 (JAX itself would abort with a
    stack trace after five minutes).

    Raises:
      ValueError: when only some of the three settings are given.
    """
    values: dict[str, Any] = {
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
        where = (
            f"process {values['process_id']} of {values['num_processes']}: waiting for the "
            f"{values['num_processes']} processes at coordinator {values['coordinator_address']}"
        )
        kwargs: dict[str, Any] = {
            "coordinator_address": str(values["coordinator_address"]),
            "num_processes": int(values["num_processes"]),
            "process_id": int(values["process_id"]),
        }
    else:
        where, kwargs = "waiting for the cluster's processes (auto-detected coordinator)", {}
    notify(f"{where} (timeout {timeout_seconds} s)")
    with _watchdog(timeout_seconds, where):
        # JAX aborts the process (SIGABRT, a C++ stack trace) when its own timeout
        # expires; it gets a margin, so that the watchdog's clear error comes first
        jax.distributed.initialize(**kwargs, initialization_timeout=timeout_seconds + 30)
    return True


@contextmanager
def _watchdog(seconds: int, where: str) -> Iterator[None]:
    """Ends the process with one clear line if start-up takes longer than ``seconds``."""

    def expire() -> None:
        print(
            f"error: multi-host start-up timed out after {seconds} s ({where}). Check that "
            "every process was started, with the same coordinator address and number of "
            "processes and its own process id, and that the coordinator's port is reachable "
            "from every host.",
            file=sys.stderr,
            flush=True,
        )
        os._exit(1)

    timer = threading.Timer(seconds, expire)
    timer.daemon = True
    timer.start()
    try:
        yield
    finally:
        timer.cancel()
