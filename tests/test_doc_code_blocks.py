"""Every code block of the README and of the documentation pages is run, so that no example
can rot.

* Each ```` ```python ```` block runs, in a fresh interpreter per page (the page's blocks in
  order, in one namespace), from the repository root with the worktree's code first on the
  path. A block that cannot run here (a TPU pod, a GPU, a long training, a data set that is
  not installed) says so in an HTML comment on the line before it,
  ``<!-- not run: <why> -->``; those are listed, each with its reason.
* Each ```` ```bash ```` block must parse as bash (``bash -n``): the commands of a page are
  at least well-formed.
* Every fenced block names its language, so that a Python example cannot hide in an
  untagged block (output and other text is ```` ```text ````).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import subprocess_xla_flags

ROOT = Path(__file__).resolve().parent.parent
PAGES = sorted(
    [ROOT / "README.md", *(ROOT / "docs").rglob("*.md")],
    key=lambda p: p.relative_to(ROOT).as_posix(),
)

_FENCE = re.compile(
    r"^(?P<indent> *)```(?P<lang>[\w+-]*)[^\n]*\n(?P<body>.*?)^(?P=indent)```[ \t]*$", re.M | re.S
)
_NOT_RUN = re.compile(r"<!--\s*not run:\s*(?P<why>.*?)\s*-->\s*$")


def blocks(page: Path) -> list[tuple[str, int, str, str | None]]:
    """``(language, line, body, why_not_run)`` of every fenced block of ``page``."""
    text = page.read_text()
    found = []
    for m in _FENCE.finditer(text):
        line = text.count("\n", 0, m.start()) + 1
        before = text[: m.start()].rstrip("\n").rsplit("\n", 1)[-1]
        mark = _NOT_RUN.search(before)
        indent = len(m.group("indent"))
        body = "\n".join(row[indent:] for row in m.group("body").splitlines())
        found.append((m.group("lang"), line, body, mark.group("why") if mark else None))
    return found


def _name(page: Path) -> str:
    return page.relative_to(ROOT).as_posix()


PYTHON_PAGES = [p for p in PAGES if any(b[0] == "python" and not b[3] for b in blocks(p))]


def test_the_parser_reads_blocks_and_marks(tmp_path):
    page = tmp_path / "p.md"
    page.write_text(
        "text\n\n```python\nx = 1\n```\n\n<!-- not run: needs a TPU pod -->\n"
        "```python\nrun_on_pod()\n```\n\n- item\n\n  ```bash\n  make test\n  ```\n"
    )
    assert blocks(page) == [
        ("python", 3, "x = 1", None),
        ("python", 8, "run_on_pod()", "needs a TPU pod"),
        ("bash", 14, "make test", None),
    ]


def test_the_readme_and_the_docs_have_python_blocks():
    assert ROOT / "README.md" in PYTHON_PAGES
    assert len(PYTHON_PAGES) >= 4


@pytest.mark.parametrize("page", PAGES, ids=_name)
def test_every_block_names_its_language(page):
    untagged = [line for lang, line, _, _ in blocks(page) if not lang]
    assert not untagged, f"{_name(page)}: blocks without a language at lines {untagged}"


def test_blocks_that_are_not_run_say_why():
    """The few blocks that are not run, each with its reason (shown with ``-rA``)."""
    marked = [
        (_name(p), line, why) for p in PAGES for lang, line, _, why in blocks(p) if why is not None
    ]
    for page, line, why in marked:
        assert len(why) > 10, f"{page}:{line}: say why the block is not run"
        print(f"not run: {page}:{line}: {why}")
    assert len(marked) <= 5, marked


@pytest.mark.parametrize("page", PAGES, ids=_name)
def test_bash_blocks_parse(page):
    for lang, line, body, _ in blocks(page):
        if lang in ("bash", "sh", "shell"):
            out = subprocess.run(["bash", "-n"], input=body, capture_output=True, text=True)
            assert out.returncode == 0, f"{_name(page)}:{line}: {out.stderr}"


@pytest.mark.integration
@pytest.mark.parametrize("page", PYTHON_PAGES, ids=_name)
def test_python_blocks_run(page):
    """The page's Python blocks, in order, in one fresh interpreter, as a reader would run
    them from the root of a clone."""
    source = "\n".join(
        f"exec(compile({body!r}, {f'{_name(page)}:{line}'!r}, 'exec'), NAMESPACE)"
        for lang, line, body, why in blocks(page)
        if lang == "python" and why is None
    )
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
        "XLA_FLAGS": subprocess_xla_flags(1),
        "MLF_JAX_CPU_DEVICES": "1",
    }
    out = subprocess.run(
        [sys.executable, "-c", f"NAMESPACE = {{'__name__': '__main__'}}\n{source}"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, f"{_name(page)}:\n{out.stderr[-4000:]}"


def test_the_readme_is_short_and_opens_with_its_example():
    """The README is the front door: at most 250 lines, and its first block, the example of
    at most 20 lines, on the first screen."""
    readme = ROOT / "README.md"
    assert len(readme.read_text().splitlines()) <= 250
    lang, line, body, why = blocks(readme)[0]
    assert (lang, why) == ("python", None)
    assert line <= 15 and len(body.splitlines()) <= 20, (line, len(body.splitlines()))
