"""The lever runs quoted on the converged-runs page (``docs/results/converged.md``, "Twice the
widths") are those of their committed metrics (``experiments/results/converged_levers/``), and
the choices the page draws from them are what those held-out accuracies say. Nothing is
trained here."""

import json
import re
from pathlib import Path

import pytest

from experiments.configs import fashion_mnist_converged_wide

ROOT = Path(__file__).resolve().parents[2]
LEVERS = ROOT / "experiments" / "results" / "converged_levers"
PAGE = ROOT / "docs" / "results" / "converged.md"
RATES = ("0.2", "0.4")


def _evals(rate: str) -> dict[int, dict]:
    lines = (LEVERS / f"wide_lr{rate}_metrics.jsonl").read_text().splitlines()
    records = [json.loads(line) for line in lines if line.strip()]
    return {r["epoch"]: r for r in records if r["kind"] == "eval"}


def _section() -> str:
    text = PAGE.read_text()
    start = text.index("## Twice the widths")
    return text[start : text.index("\n## ", start + 1)]


def test_the_pages_table_is_the_held_out_accuracy_of_each_run():
    section = _section()
    for rate in RATES:
        evals = _evals(rate)
        assert sorted(evals) == [1, 2, 3, 4]
        for key, name in (("val_accuracy", "weights"), ("ema_val_accuracy", "their average")):
            row = re.search(rf"\| learning rate {rate}, {name}[^|]*\|([^\n]*)\|\n", section)
            assert row, f"no row for learning rate {rate}, {name}"
            shown = [float(c) for c in row.group(1).split("|")]
            assert shown == pytest.approx([100 * evals[e][key] for e in (1, 2, 3, 4)], abs=0.005)


def test_the_runs_held_out_5000_images_and_trained_the_wide_recipe_for_4_epochs():
    for rate in RATES:
        evals = _evals(rate)
        assert evals[4]["step"] == 4 * (55_000 // 256)  # 55,000 images trained on


def test_the_choices_are_the_held_out_splits():
    last = {rate: _evals(rate)[4] for rate in RATES}
    best = max(RATES, key=lambda r: last[r]["val_accuracy"])
    config = fashion_mnist_converged_wide.get_config()
    assert config.learning_rate == float(best) == 0.4
    # the average trails the weights after the last epoch in both runs: not used
    assert all(last[r]["ema_val_accuracy"] < last[r]["val_accuracy"] for r in RATES)
    assert config.get("ema_decay", 0.0) == 0.0 and config.get("validation_size", 0) == 0


def test_the_margins_quoted_are_the_runs():
    text = " ".join(_section().split())
    last = {rate: _evals(rate)[4] for rate in RATES}
    lead = re.search(r"([\d.]+) points above 0\.2 after the last epoch", text)
    assert lead and float(lead.group(1)) == pytest.approx(
        100 * (last["0.4"]["val_accuracy"] - last["0.2"]["val_accuracy"]), abs=0.005
    )
    trail = re.search(r"by ([\d.]+) and ([\d.]+) points after the last", text)
    assert trail
    assert [float(x) for x in trail.groups()] == pytest.approx(
        [100 * (last[r]["val_accuracy"] - last[r]["ema_val_accuracy"]) for r in RATES], abs=0.005
    )
