"""The side-by-side benchmarks' plumbing (not their timings): skipping without the
authors' code, the README block, the tables, the worker protocol of our contenders."""

import json
import os
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
