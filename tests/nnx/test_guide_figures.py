"""The NNX-against-Linen figures of the Flax NNX guide (``docs/guides/nnx.md``) are those of
the committed results file (``experiments/results/nnx_vs_linen.json``). Nothing is trained
here: ``python -m experiments.nnx_vs_linen`` wrote the file."""

import json
import re
from pathlib import Path

import numpy as np
import pytest

from experiments import nnx_vs_linen

ROOT = Path(__file__).resolve().parents[2]
RECORD = json.loads((ROOT / "experiments" / "results" / "nnx_vs_linen.json").read_text())
GUIDE = " ".join((ROOT / "docs" / "guides" / "nnx.md").read_text().split())


def _accuracies(contender: str) -> np.ndarray:
    return 100 * np.array([run[contender]["accuracy"] for run in RECORD["runs"]])


def test_the_guides_table_is_the_results_file():
    assert " ".join(nnx_vs_linen.table(RECORD).split()) in GUIDE


def test_the_summary_is_the_mean_and_std_of_the_runs():
    for contender in nnx_vs_linen.CONTENDERS:
        acc = _accuracies(contender) / 100
        assert RECORD["summary"][contender]["mean"] == pytest.approx(acc.mean())
        assert RECORD["summary"][contender]["std"] == pytest.approx(acc.std(ddof=1))


def test_from_the_same_weights_nnx_scores_what_linen_scores_on_every_seed():
    assert "NNX reaches Linen's accuracy on every seed" in GUIDE
    np.testing.assert_array_equal(_accuracies("nnx_linen_init"), _accuracies("linen"))


def test_the_own_draw_gap_quoted_is_within_the_spread_over_seeds():
    said = re.search(
        r"NNX is ([\d.]+) points below Linen on average, within the spread over seeds\*\* "
        r"\(([\d.]+) points for Linen, ([\d.]+) for NNX\)",
        GUIDE,
    )
    assert said, "the guide's sentence on NNX's own draw is missing"
    gap, linen_std, nnx_std = (float(x) for x in said.groups())
    linen, own = _accuracies("linen"), _accuracies("nnx")
    assert gap == pytest.approx(linen.mean() - own.mean(), abs=0.005 + 1e-9)
    assert linen_std == pytest.approx(linen.std(ddof=1), abs=0.005 + 1e-9)
    assert nnx_std == pytest.approx(own.std(ddof=1), abs=0.005 + 1e-9)
    assert gap <= max(linen_std, nnx_std)  # "within the spread"
    ahead = [r["seed"] for r in RECORD["runs"] if r["nnx"]["accuracy"] > r["linen"]["accuracy"]]
    assert ahead == [1, 5]  # "seeds 1 and 5: NNX's draw ahead of Linen's"
