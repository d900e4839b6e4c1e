"""The neuron benchmark's command: it runs, and every implementation matches the plain one."""

import json

import jax

from experiments.bench import neuron


def test_command_runs_and_checks_every_impl_against_the_plain_reference(tmp_path, capsys):
    out = tmp_path / "neuron.json"
    neuron.main(["--T", "3", "--N", "128", "--repeats", "1", "--out", str(out)])
    rows = json.loads(out.read_text())["rows"]
    expected = ["plain", "ours", "fused"] + ([] if jax.default_backend() == "cpu" else ["pallas"])
    assert [r["impl"] for r in rows] == expected
    for r in rows:
        assert r["max_abs_diff_out"] == 0 and r["max_abs_diff_dx"] <= 1e-6, r
        assert r["forward_s"] > 0 and r["forward_backward_s"] > 0
    assert "copy bandwidth" in capsys.readouterr().out
