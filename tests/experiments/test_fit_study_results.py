"""The fit-study figures of the converged-runs page (``docs/results/converged.md``) are those
of the committed results file (``experiments/results/fit_study.json``): its table, and each
seed quoted where it says how much is noise. Nothing is trained here."""

import json
import re
from pathlib import Path

import pytest

from experiments import fit_study

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "experiments" / "results" / "fit_study.json"


PAGE = ROOT / "docs" / "results" / "converged.md"


def _page_section() -> str:
    text = PAGE.read_text()
    start = text.index("## What limits the fit")
    end = text.find("\n## ", start + 1)
    return text[start : end if end >= 0 else len(text)]


def _runs() -> list[dict]:
    return json.loads(RESULTS.read_text())["runs"]


def test_the_pages_table_is_the_results_file():
    assert fit_study.table(_runs()) in _page_section()


def test_every_variant_of_the_study_was_run():
    assert {r["variant"] for r in _runs()} == set(fit_study.VARIANTS)


def test_the_seeds_quoted_for_the_noise_are_the_runs():
    noise = re.search(r"\*\*How much is noise\.\*\*(.*?)\n\n", _page_section(), re.S)
    assert noise, "the page's paragraph on noise is missing"
    text = " ".join(noise.group(1).split())
    by_variant: dict[str, list[float]] = {}
    for r in _runs():
        by_variant.setdefault(r["variant"], []).append(100 * r["train_accuracy"])
    several = {v: sorted(accs, reverse=True) for v, accs in by_variant.items() if len(accs) > 1}
    assert several, "no variant was run with more than one seed"
    for v, accs in several.items():
        quoted = re.search(
            rf"`{re.escape(v)}`[^`(]* by ([\d.]+)[^`(]*\(([\d.]+) % and ([\d.]+) %\)", text
        )
        assert quoted, f"{v} was run with {len(accs)} seeds; the page should quote them"
        spread, *seeds = (float(x) for x in quoted.groups())
        assert len(accs) == 2 and seeds == pytest.approx(accs, abs=0.05 + 1e-9), v
        assert spread == pytest.approx(accs[0] - accs[1], abs=0.05 + 1e-9), v
