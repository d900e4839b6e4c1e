"""A training run carried between working sessions (``experiments/weights/<name>_run/``, see
``experiments/weights/README.md``) is one ``make converged CONVERGED=<name>`` resumes: its
recorded config is the one its config file gives now, it holds one complete checkpoint, and
the converged-runs page states the step it was carried at. Nothing is trained here."""

import importlib
import json
import re
from pathlib import Path

import pytest

from experiments import run_identity

ROOT = Path(__file__).resolve().parents[2]
WEIGHTS = ROOT / "experiments" / "weights"
PAGE = ROOT / "docs" / "results" / "converged.md"


def _carried() -> dict[str, Path]:
    return {p.name.removesuffix("_run"): p for p in sorted(WEIGHTS.glob("*_run")) if p.is_dir()}


def _step(run: Path) -> int:
    (checkpoint,) = (run / "checkpoints").iterdir()  # only the newest one is carried
    return int(checkpoint.name)


def test_the_page_states_the_step_of_every_carried_run_and_no_other():
    """Each "carried at step N of M" on the page is a carried run's checkpoint, and back."""
    text = " ".join(PAGE.read_text().split())
    claimed = {int(n.replace(",", "")) for n in re.findall(r"carried at step ([\d,]+) of", text)}
    assert claimed == {_step(run) for run in _carried().values()}


@pytest.mark.parametrize("name", sorted(_carried()) or [pytest.param(None, id="none")])
def test_a_carried_run_resumes_under_its_config(name):
    if name is None:  # nothing is carried: the page must not say a run is
        assert "carried at step" not in PAGE.read_text()
        return
    run = _carried()[name]
    config = importlib.import_module(f"experiments.configs.{name}").get_config()
    assert run_identity.check(run, config, started=True) == {}  # raises on a differing key
    checkpoint = run / "checkpoints" / str(_step(run))
    for part in ("", "meta", "state"):  # Orbax marks each part written in full
        assert (checkpoint / part / "commit_success.txt").is_file(), part
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert any(r["step"] == _step(run) for r in records)  # its metrics reach the checkpoint
