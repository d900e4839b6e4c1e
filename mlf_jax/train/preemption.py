"""Stopping a run cleanly: SIGTERM (preemption) and SIGINT (Ctrl-C) become a flag.

A training loop polls :attr:`StopSignals.received` between steps, saves a
checkpoint and returns, instead of dying mid-step. A second SIGINT aborts at once
(``KeyboardInterrupt``), for a user who does not want to wait for the save.
With several processes, :func:`agree_to_stop` makes them all stop at the same step.
"""

from __future__ import annotations

import signal
import threading
from typing import Any

import jax
import numpy as np

__all__ = ["StopSignals", "agree_to_stop"]


class StopSignals:
    """Context manager that records SIGTERM and SIGINT instead of dying.

    ``received`` is ``None`` until a signal arrives, then its name (``'SIGTERM'``
    or ``'SIGINT'``). Outside the main thread (where Python cannot install signal
    handlers) it records nothing.
    """

    def __init__(self) -> None:
        self.received: str | None = None
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> StopSignals:
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGTERM, signal.SIGINT):
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum: int, frame: Any) -> None:
        name = signal.Signals(signum).name
        if name == "SIGINT" and self.received == "SIGINT":
            raise KeyboardInterrupt  # a second Ctrl-C: abort without saving
        self.received = self.received or name

    def __exit__(self, *exc: Any) -> None:
        for sig, previous in self._previous.items():
            signal.signal(sig, previous)
        self._previous = {}


def agree_to_stop(received: bool, step: int, every: int) -> bool:
    """Whether to stop now. One process stops as soon as it is asked; several agree
    (an all-gather of their flags) every ``every`` steps, so that all of them save and
    stop at the same step."""
    if jax.process_count() == 1:
        return received
    if step % every:
        return False
    from jax.experimental import multihost_utils

    return bool(np.any(multihost_utils.process_allgather(np.asarray(received))))
