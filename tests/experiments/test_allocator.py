"""The experiment commands re-execute themselves under jemalloc (experiments/allocator.py)."""

import os
import subprocess
import sys

import pytest

from experiments import allocator

SCRIPT = (
    "import sys; from experiments.allocator import allocator, reexec_with_jemalloc; "
    "print('start', flush=True); reexec_with_jemalloc(); print(allocator(), sys.argv[1:])"
)


def _run(**env):
    base = {k: v for k, v in os.environ.items() if k not in ("LD_PRELOAD", "MALLOC_CONF")}
    base.pop(allocator._TRIED, None)
    base.pop(allocator.ENV_VAR, None)
    return subprocess.run(
        [sys.executable, "-c", SCRIPT, "--flag=1", "x"],
        env={**base, **env},
        capture_output=True,
        text=True,
        check=False,
    )


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="LD_PRELOAD is Linux only")
def test_reexec_loads_jemalloc_when_present_and_keeps_the_arguments():
    out = _run()
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    if allocator.find_jemalloc() is None:
        assert lines == ["start", "system ['--flag=1', 'x']"]
        assert out.stderr == ""  # said where it matters, by notice(), not at every start
    else:  # 'start' twice: once before the exec, once in the new process
        assert lines == ["start", "start", "jemalloc ['--flag=1', 'x']"]


def test_system_allocator_on_request():
    out = _run(MLF_JAX_ALLOCATOR="system")
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == ["start", "system ['--flag=1', 'x']"]
    assert out.stderr == ""


def test_unknown_allocator_is_an_error():
    out = _run(MLF_JAX_ALLOCATOR="tcmalloc")
    assert out.returncode != 0
    assert "must be 'jemalloc' or 'system'" in out.stderr


def test_the_notice_is_said_once_and_only_when_jemalloc_is_missing(monkeypatch, capsys):
    monkeypatch.setattr(allocator, "_NOTICED", [])
    monkeypatch.delenv(allocator.ENV_VAR, raising=False)
    monkeypatch.setattr(allocator, "allocator", lambda: "jemalloc")
    assert allocator.notice() is None
    monkeypatch.setattr(allocator, "allocator", lambda: "system")
    monkeypatch.setenv(allocator.ENV_VAR, "system")
    assert allocator.notice() is None
    monkeypatch.delenv(allocator.ENV_VAR)
    monkeypatch.setattr(allocator, "find_jemalloc", lambda: None)
    line = allocator.notice()
    if not sys.platform.startswith("linux"):
        assert line is None
        return
    assert line is not None and "jemalloc not found" in line
    assert allocator.notice() is None  # once per process
    assert capsys.readouterr().err == line + "\n"
