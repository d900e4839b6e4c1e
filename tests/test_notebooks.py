"""The notebooks are valid, parameterised, and committed with their outputs, which hold no
machine path and no warning.

Nothing is executed here: `make notebooks` (notebooks/run.py, run by CI) executes them.
"""

import json
import re
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat", reason="the 'notebooks' extra is not installed")

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"
PATHS = sorted(NOTEBOOKS.glob("*.ipynb"))
SMALL_LINE = 'SMALL = os.environ.get("MLF_JAX_NOTEBOOK_SMALL", "0") == "1"'


def test_there_are_notebooks():
    assert PATHS, f"no notebooks in {NOTEBOOKS}"


@pytest.fixture(params=PATHS, ids=[p.name for p in PATHS])
def notebook(request):
    return request.param, nbformat.read(request.param, as_version=nbformat.NO_CONVERT)


def test_is_valid_nbformat_4(notebook):
    path, nb = notebook
    assert nb.nbformat == 4, f"{path.name}: nbformat {nb.nbformat}"
    nbformat.validate(nb)


def test_first_code_cell_is_the_parameters_cell(notebook):
    path, nb = notebook
    first = next((c for c in nb.cells if c.cell_type == "code"), None)
    assert first is not None, f"{path.name} has no code cell"
    assert "parameters" in first.metadata.get("tags", []), (
        f"{path.name}: the first code cell must be tagged 'parameters'"
    )
    assert SMALL_LINE in first.source, f"{path.name}: the parameters cell must read {SMALL_LINE}"


def test_committed_with_outputs_of_a_full_run(notebook):
    path, nb = notebook
    code = [c for c in nb.cells if c.cell_type == "code"]
    hint = f"regenerate with: .venv/bin/python notebooks/run.py --full --write {path.name}"
    missing = [i for i, c in enumerate(code) if c.execution_count is None]
    assert not missing, f"{path.name}: code cells {missing} were not executed; {hint}"
    outputs = [o for c in code for o in c.outputs]
    assert outputs, f"{path.name} has no outputs; {hint}"
    errors = [o for o in outputs if o.output_type == "error"]
    assert not errors, f"{path.name} is committed with an error output; {hint}"
    assert any("image/png" in o.get("data", {}) for o in outputs), f"{path.name}: no PNG plot"
    counts = [c.execution_count for c in code]
    assert counts == list(range(1, len(code) + 1)), f"{path.name} was not run top to bottom"
    assert nb.metadata.get("mlf_jax", {}).get("small") is False, (
        f"{path.name}: the committed outputs must come from a full run; {hint}"
    )


# An absolute path of the machine that ran the notebook (home, work or temporary folders,
# an installed package): committed outputs must read the same on any machine.
MACHINE_PATH = re.compile(
    r"(?<![\w.~-])/(?:work|root|home|tmp|var|opt|usr|mnt|srv|private|Users)/"
    r"|site-packages|dist-packages|\b[A-Z]:\\\w"
)
WARNING = re.compile(r"Warning\b|WARNING")


def _output_texts(output) -> list[str]:
    """The text of one output: a stream's, an error's traceback, and every textual
    representation of a result or display (images left out)."""
    texts = []
    if output.output_type == "stream":
        texts.append(output.text)
    elif output.output_type == "error":
        texts += [output.ename, output.evalue, *output.traceback]
    for mime, value in output.get("data", {}).items():
        if mime.startswith("text/") or mime.endswith("json"):
            texts.append(value if isinstance(value, str) else json.dumps(value))
    return texts


def test_outputs_hold_no_machine_path_and_no_warning(notebook):
    path, nb = notebook
    problems = []
    for index, cell in enumerate(nb.cells):
        for output in cell.get("outputs", []):
            if output.output_type == "stream" and output.name == "stderr":
                problems.append(f"cell {index}: stderr output {output.text[:120]!r}")
            for text in _output_texts(output):
                for pattern, what in ((MACHINE_PATH, "a machine path"), (WARNING, "a warning")):
                    found = pattern.search(text)
                    if found:
                        around = text[max(0, found.start() - 60) : found.end() + 60]
                        problems.append(f"cell {index}: {what}: {around!r}")
    assert not problems, f"{path.name}: " + "; ".join(problems)
