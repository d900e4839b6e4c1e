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

__all__ = ["initialize", "settings"]


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
    prefix: str = "",
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
    stack trace after five minutes). ``prefix``: how messages name the settings
    (:func:`settings`).

    Raises:
      ValueError: a mistake in the settings (:func:`settings`, checked before JAX starts
        anything), or ``auto=True`` off a cluster that JAX detects.
    """
    kwargs = settings(coordinator_address, num_processes, process_id, auto=auto, prefix=prefix)
    if kwargs is None:
        return False
    jax.config.update("jax_cpu_collectives_implementation", cpu_collectives)
    if kwargs:
        where = (
            f"process {kwargs['process_id']} of {kwargs['num_processes']}: waiting for the "
            f"{kwargs['num_processes']} processes at coordinator {kwargs['coordinator_address']}"
        )
    else:
        where = "waiting for the cluster's processes (auto-detected coordinator)"
    # off a cluster, auto-detection fails at once: the notice waits a second, so that the
    # error is the only line
    with _delayed(0.0 if kwargs else 1.0, lambda: notify(f"{where} (timeout {timeout_seconds} s)")):
        with _watchdog(timeout_seconds, where):
            try:
                # JAX aborts the process (SIGABRT, a C++ stack trace) when its own timeout
                # expires; it gets a margin, so that the watchdog's clear error comes first
                jax.distributed.initialize(**kwargs, initialization_timeout=timeout_seconds + 30)
            except ValueError as e:
                if kwargs:  # the settings were checked: not the user's mistake
                    raise
                raise ValueError(_NO_CLUSTER.format(prefix, e)) from None
    return True


_NO_CLUSTER = (
    "multi-host: {0}auto=True found no cluster to join (JAX detects Cloud TPU pods, "
    "SLURM, Open MPI and Kubernetes jobs; it says: {1}); elsewhere set {0}coordinator_address, "
    "num_processes and process_id instead, or leave {0}auto=False for one process"
)


def settings(
    coordinator_address: str | None = None,
    num_processes: int | None = None,
    process_id: int | None = None,
    *,
    auto: bool = False,
    prefix: str = "",
) -> dict[str, Any] | None:
    """The multi-host settings :func:`initialize` would use, checked; starts nothing.

    Explicit arguments win, then the environment variables (see :func:`initialize`).
    A message names a setting ``prefix + name`` (``'config.distributed.'``: the key the
    user wrote), or by its environment variable where the value came from there.

    Returns:
      ``None`` for one process (nothing set, ``auto=False``); ``{}`` for JAX's cluster
      auto-detection; else ``coordinator_address``, ``num_processes`` and ``process_id``,
      ready for ``jax.distributed.initialize``.

    Raises:
      ValueError: one sentence naming the mistake: only some of the three settings, a
        process id outside ``0 .. num_processes - 1``, a coordinator address that is not
        ``host:port``, a value from the environment that is not an integer.
    """
    values: dict[str, Any] = {
        "coordinator_address": coordinator_address or os.environ.get(_ENV["coordinator_address"]),
        "num_processes": num_processes or os.environ.get(_ENV["num_processes"]),
        "process_id": process_id
        if process_id is not None and process_id >= 0
        else os.environ.get(_ENV["process_id"]),
    }
    source = {
        k: _ENV[k] if v is not None and v == os.environ.get(_ENV[k]) else prefix + k
        for k, v in values.items()
    }
    given = {k for k, v in values.items() if v not in (None, "", 0)}
    if values["process_id"] in (0, "0"):
        given.add("process_id")
    if given and given != set(values):
        missing = sorted(set(values) - given)
        raise ValueError(
            f"multi-host needs {prefix}coordinator_address, num_processes and process_id "
            f"together; missing {missing} (set them in the config's `distributed` block or as "
            f"{', '.join(_ENV[m] for m in missing)})"
        )
    if not given:
        return {} if auto else None
    count = _whole(values["num_processes"], source["num_processes"])
    index = _whole(values["process_id"], source["process_id"])
    if count < 1:
        raise ValueError(f"multi-host: {source['num_processes']} must be >= 1, got {count}")
    if not 0 <= index < count:
        raise ValueError(
            f"multi-host: {source['process_id']} must be in 0 .. {count - 1} (one id per "
            f"process, {source['num_processes']}={count}), got {index}"
        )
    address = str(values["coordinator_address"]).strip()
    _check_address(address, source["coordinator_address"])
    return {"coordinator_address": address, "num_processes": count, "process_id": index}


def _whole(value: Any, name: str) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    try:
        return int(str(value).strip())
    except ValueError:
        raise ValueError(f"multi-host: {name} must be an integer, got {value!r}") from None


def _check_address(address: str, name: str) -> None:
    """``host:port``, the port an integer in 1 .. 65535, an IPv6 host in brackets."""
    host, sep, port = address.rpartition(":")
    example = "e.g. 10.0.0.2:8476 or [fd00::2]:8476"
    if not sep or not host:
        raise ValueError(
            f"multi-host: {name} must be host:port (the coordinator's, process 0's, host "
            f"and a free port), {example}; got {address!r}"
        )
    if not port.isdigit() or not 1 <= int(port) <= 65535:
        raise ValueError(
            f"multi-host: {name} must end in a port number 1 .. 65535, {example}; got {address!r}"
        )
    if ":" in host and not (host.startswith("[") and host.endswith("]")):
        raise ValueError(
            f"multi-host: {name} is an IPv6 address without brackets; write "
            f"[host]:port, {example}; got {address!r}"
        )


@contextmanager
def _delayed(seconds: float, action: Callable[[], None]) -> Iterator[None]:
    """Runs ``action`` now (``seconds=0``), or after ``seconds`` unless the block is done."""
    if seconds <= 0:
        action()
        yield
        return
    timer = threading.Timer(seconds, action)
    timer.daemon = True
    timer.start()
    try:
        yield
    finally:
        timer.cancel()


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
