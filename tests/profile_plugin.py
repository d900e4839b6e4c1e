"""A pytest plugin that records each test's wall time and its process's memory.

Enabled with ``-p tests.profile_plugin`` (``make test-profile``). Every test process (the main
one, or each xdist worker) appends one JSON line per test to the file named by
``MLF_JAX_TEST_PROFILE``: the test's id, its file, its setup + call + teardown seconds, the
process's resident memory after it (``VmRSS``) and the process's peak resident memory during it
(``VmHWM``, reset after every test). ``python -m tests.profile_report FILE`` turns the lines into
per-file and per-test tables.
"""

import json
import os
import time
from pathlib import Path

import pytest

_OUT = os.environ.get("MLF_JAX_TEST_PROFILE", "test-profile.jsonl")


def _status_kib(field: str) -> int:
    """A ``/proc/self/status`` memory field (``VmRSS``, ``VmHWM``) in KiB; 0 where absent."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def _reset_peak() -> None:
    """Start a new peak-RSS window (Linux: writing 5 to ``clear_refs`` resets ``VmHWM``)."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item, nextitem):
    _reset_peak()
    start = time.perf_counter()
    yield
    seconds = time.perf_counter() - start
    record = {
        "test": item.nodeid,
        "file": item.nodeid.split("::")[0],
        "seconds": round(seconds, 3),
        "rss_mib": round(_status_kib("VmRSS") / 1024, 1),
        "peak_mib": round(_status_kib("VmHWM") / 1024, 1),
        "worker": os.environ.get("PYTEST_XDIST_WORKER", "main"),
        "pid": os.getpid(),
    }
    with open(_OUT, "a") as f:
        f.write(json.dumps(record) + "\n")
