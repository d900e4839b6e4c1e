"""Benchmark helpers: separate virtualenvs and long-lived worker processes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

__all__ = ["ROOT", "venv_python", "Worker"]

#: The repository root (workers run there).
ROOT = Path(__file__).resolve().parents[2]


def venv_python(venv: Path, requirements: list[str], probe: str, no_deps: list[str] = ()) -> Path:
    """The interpreter of ``venv``, creating it with ``requirements`` (and ``no_deps``
    without their dependencies) unless ``probe`` (a Python statement) already runs there."""
    python = venv / "bin" / "python"
    if python.exists() and _runs(python, probe):
        return python
    print(f"creating {venv} with {' '.join(requirements)} (once; takes a few minutes)")
    subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True)
    pip = [str(python), "-m", "pip", "install", "--quiet"]
    subprocess.run([*pip, *requirements], check=True)
    if no_deps:
        subprocess.run([*pip, "--no-deps", *no_deps], check=True)
    if not _runs(python, probe):
        sys.exit(f"error: {venv} was created but `{probe}` fails there")
    return python


def _runs(python: Path, statement: str) -> bool:
    result = subprocess.run([str(python), "-c", statement], capture_output=True, check=False)
    return result.returncode == 0


class Worker:
    """A child process answering one JSON line per JSON command."""

    def __init__(self, name: str, cmd: list[str], env: dict | None = None):
        self.name = name
        self.proc = subprocess.Popen(
            cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env, cwd=ROOT
        )

    def ask(self, **command) -> dict:
        self.proc.stdin.write(json.dumps(command) + "\n")
        self.proc.stdin.flush()
        while True:
            line = self.proc.stdout.readline()
            if not line:
                sys.exit(f"error: the {self.name} worker died (exit {self.proc.wait()})")
            if line.startswith("{"):
                return json.loads(line)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.stdin.write(json.dumps({"cmd": "quit"}) + "\n")
            self.proc.stdin.flush()
            self.proc.wait()
