"""The test-suite profile tables (``make test-profile``) add up what the plugin recorded."""

import json

from tests import profile_report


def _record(test, seconds, rss, peak, pid=1):
    return {"test": test, "file": test.split("::")[0], "seconds": seconds, "rss_mib": rss,
            "peak_mib": peak, "worker": "gw0", "pid": pid}  # fmt: skip


RECORDS = [
    _record("tests/a.py::x", 1.0, 500, 600),
    _record("tests/b.py::y", 4.0, 700, 900, pid=2),
    _record("tests/a.py::z", 2.5, 550, 580),
]


def test_files_sum_their_tests_keep_the_largest_peak_and_the_last_rss():
    rows = profile_report.by_file(RECORDS)
    assert [r["file"] for r in rows] == ["tests/b.py", "tests/a.py"]  # slowest first
    a = rows[1]
    assert a["tests"] == 2 and a["seconds"] == 3.5
    assert a["peak_mib"] == 600 and a["rss_after_mib"] == 550


def test_the_table_reads_the_plugin_file(tmp_path):
    path = tmp_path / "profile.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in RECORDS))
    text = profile_report.table(profile_report.load(path), top=1)
    assert text.startswith("3 tests, 8 s of test time (summed over workers: 2 process(es))")
    assert "| tests/a.py | 2 | 3.5 | 46.7 % | 600 | 550 |" in text
    assert text.rstrip().endswith("| tests/b.py::y | 4.0 |")  # the one slowest test
