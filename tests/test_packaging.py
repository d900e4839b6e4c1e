"""The install: core ranges, extras that cover every import, the lock, the console script."""

from __future__ import annotations

import ast
import importlib.metadata
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[1]
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
EXTRAS = PROJECT["optional-dependencies"]

#: Which requirements each part of the code may import from: the library's core, its lazily
#: loaded sub-packages (with their extra), and the experiment commands (every extra).
PARTS = {
    "core": (),
    "mlf_jax/data": ("data",),
    "mlf_jax/train": ("train",),
    "mlf_jax/plot.py": ("notebooks",),
    "mlf_jax/nir": ("nir",),
}


def _requirements(*extras: str) -> list[Requirement]:
    reqs = [Requirement(r) for r in PROJECT["dependencies"]]
    for extra in extras:
        reqs += [Requirement(r) for r in EXTRAS[extra] if not r.startswith("mlf_jax")]
    return reqs


def _names(reqs: list[Requirement]) -> set[str]:
    return {canonicalize_name(r.name) for r in reqs}


def _files(part: str) -> list[Path]:
    """The Python files of ``part``; the core is ``mlf_jax/`` less the lazily loaded parts."""
    if part != "core":
        path = ROOT / part
        return [path] if path.is_file() else sorted(path.rglob("*.py"))
    lazy = [ROOT / p for p in PARTS if p != "core"]
    files = sorted((ROOT / "mlf_jax").rglob("*.py"))
    return [f for f in files if not any(f == p or p in f.parents for p in lazy)]


def _third_party_imports(files: list[Path]) -> set[str]:
    """Top-level modules imported anywhere in ``files`` (inside functions too), less the
    standard library and the project's own packages."""
    found: set[str] = set()
    for f in files:
        for node in ast.walk(ast.parse(f.read_text(), str(f))):
            if isinstance(node, ast.Import):
                found |= {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                found.add(node.module.split(".")[0])
    own = {"mlf_jax", "experiments", "tests"}
    return {m for m in found if m not in sys.stdlib_module_names and m not in own}


def _distributions(module: str) -> set[str]:
    return {canonicalize_name(d) for d in importlib.metadata.packages_distributions()[module]}


@pytest.mark.parametrize("part", list(PARTS))
def test_every_import_is_a_declared_requirement(part):
    extras = PARTS[part]
    declared = _names(_requirements(*extras))
    # What the declared requirements bring in themselves (e.g. jax brings ml_dtypes) is not
    # enough: the code imports only what it declares.
    files = _files(part)
    assert files, part
    missing = {
        m: sorted(_distributions(m))
        for m in _third_party_imports(files)
        if not _distributions(m) & declared
    }
    assert not missing, f"{part} imports {missing}, not declared in {('core', *extras)}"


def test_min_requirements_are_the_lower_bounds_of_the_core():
    pins = {}
    for line in (ROOT / "requirements-min.txt").read_text().splitlines():
        line = line.split("#")[0].strip()
        if line:
            req = Requirement(line)
            pins[canonicalize_name(req.name)] = req.specifier
    for req in _requirements():
        lower = [s.version for s in req.specifier if s.operator == ">="]
        assert len(lower) == 1, f"{req}: the core needs one lower bound"
        pin = [s for s in pins[canonicalize_name(req.name)] if s.operator == "=="]
        assert [s.version for s in pin] == lower, f"{req.name}: {pins[req.name]} vs {req}"


def _locked() -> dict[str, str]:
    """``name -> version`` of every ``name==version`` line of requirements.lock."""
    text = (ROOT / "requirements.lock").read_text()
    pins = re.finditer(r"^([A-Za-z0-9_.\-]+)==(\S+)", text, re.M)
    return {canonicalize_name(m[1]): m[2] for m in pins}


def test_lock_pins_every_requirement_within_its_range():
    locked = _locked()
    extras = [e for e in EXTRAS if e not in ("all", "tpu", "cuda12", "cuda13")]
    for req in _requirements(*extras):
        name = canonicalize_name(req.name)
        assert name in locked, f"{req.name} is not in requirements.lock: run `make lock`"
        assert req.specifier.contains(locked[name], prereleases=True), (
            f"requirements.lock pins {req.name}=={locked[name]}, outside {req}: run `make lock`"
        )
    assert "mlf-jax" not in locked  # installed editable from the clone, not from the lock


def test_lock_is_what_this_environment_runs():
    """The environment the tests run in was installed from the lock (CI's is): a package
    whose version differs means the lock and the tested versions drifted apart."""
    locked = _locked()
    differ = {}
    for name in ("jax", "jaxlib", "flax", "optax", "numpy", "orbax-checkpoint", "grain"):
        try:
            have = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
        if have != locked[name]:
            differ[name] = (have, locked[name])
    assert not differ, f"installed vs requirements.lock: {differ}"


def test_console_script_runs_experiments_train_of_the_clone(tmp_path):
    assert PROJECT["scripts"]["mlf-train"] == "mlf_jax._cli:train"
    from mlf_jax import _cli

    assert _cli.repository_root() == ROOT
    missing = tmp_path / "missing.py"
    script = f"from mlf_jax._cli import train; train(['--config={missing}', '--workdir=w'])"
    done = subprocess.run(
        [sys.executable, "-c", script],
        cwd=tmp_path,  # not the clone: the script finds it from the package's location
        capture_output=True,
        text=True,
        timeout=300,
    )
    # experiments.train ran: its check of the config file, one line, exit code 1
    assert done.returncode == 1
    assert done.stderr.strip() == f"error: config file '{missing}' does not exist"


def test_console_script_without_a_clone_says_what_to_do(monkeypatch, capsys):
    from mlf_jax import _cli

    monkeypatch.setattr(_cli, "repository_root", lambda: None)
    with pytest.raises(SystemExit) as e:
        _cli.train(["--config=x.py", "--workdir=w"])
    assert "clone of the mlf_jax repository" in str(e.value)
    assert "pip install -e '.[train,data]'" in str(e.value)


def test_image_requirements_pin_the_core_within_its_ranges():
    pins = {}
    for line in (ROOT / "requirements-image.txt").read_text().splitlines():
        line = line.split("#")[0].strip()
        if line and "==" in line:
            req = Requirement(line)
            pins[canonicalize_name(req.name)] = next(iter(req.specifier)).version
    assert pins["jax"] == pins["jaxlib"] == "0.11.2"  # the accelerator image's
    for req in _requirements():
        name = canonicalize_name(req.name)
        assert req.specifier.contains(pins[name]), f"requirements-image.txt: {name} outside {req}"


def _make_venv(tmp_path, **variables) -> subprocess.CompletedProcess:
    """The Makefile's ``make_venv`` for .venv's Python versions, into ``tmp_path / 'v'``."""
    venv = tmp_path / "v"
    probe = f"include Makefile\nprobe:\n\t$(call make_venv,{venv},$(PYTHON_VERSIONS),PYTHON)\n"
    args = [f"{k}={v}" for k, v in variables.items()]
    return subprocess.run(
        ["make", "-s", "-f", "-", "probe", *args],
        input=probe, cwd=ROOT, capture_output=True, text=True, timeout=120,
    )  # fmt: skip


def test_make_builds_the_venv_with_a_python_in_range_or_says_what_it_needs(tmp_path):
    wrong = _make_venv(tmp_path, PYTHON="/nonexistent/python3")
    assert wrong.returncode != 0 and not (tmp_path / "v").exists()
    assert (
        "needs Python 3.12 or 3.13, and PYTHON=/nonexistent/python3 is not found: name "
        "another, or leave PYTHON unset to let make search"
    ) in wrong.stderr
    none = _make_venv(tmp_path, PYTHON="", PATH="/nonexistent", PYENV_ROOT="")
    assert "none is on PATH or under pyenv" in none.stderr and none.returncode != 0
    assert "make PYTHON=/path/to/python3.12" in none.stderr
    if sys.version_info[:2] in ((3, 12), (3, 13)):  # the interpreter running the tests will do
        done = _make_venv(tmp_path, PYTHON=sys.executable)
        assert done.returncode == 0, done.stderr
        assert f"Python {sys.version.split()[0]}" in done.stdout
        assert (tmp_path / "v" / "bin" / "python").exists()


@pytest.mark.parametrize(
    "part, blocked, extra",
    [("mlf_jax.data", "tqdm", "data"), ("mlf_jax.train", "orbax.checkpoint", "train"),
     ("mlf_jax.plot", "matplotlib", "notebooks"), ("mlf_jax.nir", "nir", "nir")],
)  # fmt: skip
def test_a_missing_extra_is_named_in_one_line(part, blocked, extra):
    code = f"import sys; sys.modules[{blocked.split('.')[0]!r}] = None\nimport {part}"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 1
    last = done.stderr.strip().splitlines()[-1]
    assert f"{part} needs the '{extra}' extra ({blocked} is not installed)" in last, last
    assert f"pip install 'mlf_jax[{extra}]'" in last
