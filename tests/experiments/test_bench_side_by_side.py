"""The side-by-side benchmarks' plumbing (not their timings): skipping without the
authors' code, the speed page's block, the tables, the worker protocol of our contenders; and
the speed figures of the speed page and the README are those of the results files."""

import json
import os
import re
import sys

import pytest

from experiments.bench import peers, vs_official
from experiments.bench._workers import ROOT, Worker


def test_vs_official_skips_with_its_reason_without_the_authors_code(tmp_path, capsys):
    vs_official.main(["--official", str(tmp_path / "missing"), "--out", str(tmp_path / "o.json")])
    out = capsys.readouterr().out
    assert out.startswith("skipped: the authors' code is not at")
    assert not (tmp_path / "o.json").exists()


ROW = {
    "preset": "cifar10",
    "batch_size": 64,
    "time_steps": 4,
    "official_step_seconds": 9.0,
    "ours_step_seconds": 3.0,
    "official_over_ours": 3.0,
    "round_ratios": [2.5, 3.0, 3.5],
}


def test_the_readme_block_is_replaced_and_nothing_else(tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text(f"intro\n{vs_official.BEGIN}\nold\n{vs_official.END}\noutro\n")
    vs_official.update_readme(readme, vs_official.table([ROW]))
    text = readme.read_text()
    assert text.startswith("intro\n") and text.endswith("\noutro\n") and "old" not in text
    assert "| CIFAR10 DS-ResNet-20 | 64 | 4 | 9.00 | 3.00 | **3.00x** (2.50-3.50) |" in text


RESULTS = ROOT / "experiments" / "bench" / "results"


def _ratios(name: str) -> list[float]:
    rows = json.loads((RESULTS / f"{name}.json").read_text())["rows"]
    return [r["official_over_ours"] for r in rows]


def test_the_speed_pages_block_is_the_results_file():
    page = (ROOT / "docs" / "results" / "speed.md").read_text()
    rows = json.loads((RESULTS / "vs_official.json").read_text())["rows"]
    assert f"{vs_official.BEGIN}\n{vs_official.table(rows)}\n{vs_official.END}" in page


def test_the_readmes_speed_row_is_the_results_files():
    readme = (ROOT / "README.md").read_text()
    row = re.search(r"^\| speed against the authors' code \| (.*?) \|", readme, re.M)
    assert row, "the README's table of results has no speed row"
    cpu, gpu = _ratios("vs_official"), _ratios("gpu_vs_official")
    assert f"**{min(cpu):.2f}x** to **{max(cpu):.2f}x**" in row.group(1)
    assert f"**{min(gpu):.1f}x** to **{max(gpu):.1f}x**" in row.group(1)


def test_the_speed_pages_gpu_ratios_are_the_results_files():
    page = (ROOT / "docs" / "results" / "speed.md").read_text()
    for ratio in _ratios("gpu_vs_official"):
        assert f"**{ratio:.1f}x**" in page, ratio


def test_a_readme_without_the_block_is_an_error(tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text("no markers\n")
    with pytest.raises(SystemExit, match="no <!-- vs_official:begin -->"):
        vs_official.update_readme(readme, "x")


@pytest.mark.parametrize("text, size", [("512x100", (512, 100)), ("4096X500", (4096, 500))])
def test_sizes_parse(text, size):
    assert peers.parse_size(text) == size


@pytest.mark.parametrize("text", ["512", "x100", "0x5", "axb"])
def test_bad_sizes_are_refused(text):
    with pytest.raises(Exception, match="512x100|>= 1"):
        peers.parse_size(text)


def test_the_peers_table_marks_the_fastest():
    rows = [
        {"contender": c, "n": 512, "t": 100, "median_seconds": s}
        for c, s in (("mj.lif", 0.002), ("spyx", 0.003))
    ]
    assert peers.table(rows, ["mj.lif", "spyx"]).splitlines()[-1] == "| 512 x 100 | **2.0** | 3.0 |"


def test_our_contender_answers_the_worker_protocol():
    worker = Worker(
        "mj.mlf",
        [sys.executable, "-P", str(ROOT / "experiments/bench/_peer_worker.py"), "mj.mlf"],
        env={**os.environ, "MLF_JAX_CPU_DEVICES": "1"},
    )
    try:
        setup = worker.ask(cmd="setup", n=8, t=12, batch=2, threads=1)
        assert setup["first"] > 0 and "jax" in setup
        seconds = worker.ask(cmd="time", repeats=2)["seconds"]
        assert len(seconds) == 2 and all(s > 0 for s in seconds)
    finally:
        worker.close()
    assert worker.proc.returncode == 0


def test_every_contender_documents_its_neuron_model():
    from experiments.bench._peer_worker import MODELS

    assert set(MODELS) == {"mj.lif", "mj.mlf", "spyx", "spikingjelly", "snntorch", "norse"}
    assert set(peers.PEERS) == set(MODELS) - set(peers.OURS)
    assert all(len(v) == 4 and all(v) for v in MODELS.values())
    json.dumps(MODELS)  # goes into the results file
