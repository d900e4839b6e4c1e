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

__all__ = ["StopSignals", "agree_to_stop", "catch_early_signals", "restore_default_signals"]

#: Signals received between :func:`catch_early_signals` and the first ``StopSignals``.
_EARLY: list[str] = []


def catch_early_signals() -> None:
    """Records SIGTERM and SIGINT from now on (start-up: data, restore) instead of dying,
    for the training loop's :class:`StopSignals` to act on when it starts: a SIGINT
    (Ctrl-C) stops the run there, before its first step, with ``KeyboardInterrupt``
    (nothing to save: the state is the checkpoint's); a SIGTERM stops it after its first
    step, with a checkpoint. (A ``KeyboardInterrupt`` raised at once during start-up can
    land in a garbage-collection callback, where Python ignores it, and be lost.) A second
    SIGINT still aborts at once."""
    if threading.current_thread() is not threading.main_thread():
        return

    def record(signum: int, frame: Any) -> None:
        name = signal.Signals(signum).name
        if name == "SIGINT" and "SIGINT" in _EARLY:
            raise KeyboardInterrupt
        _EARLY.append(name)

    record._start_up = True  # type: ignore[attr-defined]
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, record)


def restore_default_signals() -> None:
    """Undoes :func:`catch_early_signals` (SIGINT raises ``KeyboardInterrupt`` again)."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, signal.default_int_handler)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)


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
        if _EARLY:  # arrived during start-up (see catch_early_signals)
            early = list(_EARLY)
            _EARLY.clear()
            if "SIGINT" in early:  # Ctrl-C: the user wants it stopped, before any step
                raise KeyboardInterrupt
            self.received = early[0]
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
            if getattr(previous, "_start_up", False):  # start-up is over: the defaults again
                previous = signal.default_int_handler if sig == signal.SIGINT else signal.SIG_DFL
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
