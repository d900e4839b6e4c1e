"""Per-file and per-test tables of a test run recorded by ``tests/profile_plugin.py``.

Usage (``make test-profile`` runs both steps)::

    MLF_JAX_TEST_PROFILE=profile.jsonl pytest -p tests.profile_plugin ...
    python -m tests.profile_report profile.jsonl [--top 25]

The per-file table sums each file's test seconds (setup, call and teardown, fixtures
included) and gives the largest resident memory any of its tests reached (``VmHWM``) and the
process's resident memory after its last test, so a file that leaves memory behind shows as a
step in the last column. Files are sorted by time, the slowest first.
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path


def load(path: Path) -> list[dict]:
    """The JSON lines of a profile file, one dict per test."""
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def by_file(records: list[dict]) -> list[dict]:
    """Each file's test count, seconds, peak and final resident memory, slowest first."""
    files: dict[str, dict] = defaultdict(
        lambda: {"tests": 0, "seconds": 0.0, "peak_mib": 0.0, "rss_after_mib": 0.0}
    )
    for r in records:
        f = files[r["file"]]
        f["tests"] += 1
        f["seconds"] += r["seconds"]
        f["peak_mib"] = max(f["peak_mib"], r["peak_mib"])
        f["rss_after_mib"] = r["rss_mib"]
    rows = [{"file": name, **v} for name, v in files.items()]
    return sorted(rows, key=lambda row: -row["seconds"])


def table(records: list[dict], top: int) -> str:
    """Markdown tables: every file, then the ``top`` slowest tests."""
    total = sum(r["seconds"] for r in records)
    lines = [
        f"{len(records)} tests, {total:.0f} s of test time "
        f"(summed over workers: {len({r['pid'] for r in records})} process(es))",
        "",
        "| file | tests | seconds | share | peak RSS (MiB) | RSS after (MiB) |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for row in by_file(records):
        lines.append(
            f"| {row['file']} | {row['tests']} | {row['seconds']:.1f} | "
            f"{100 * row['seconds'] / total:.1f} % | {row['peak_mib']:.0f} | "
            f"{row['rss_after_mib']:.0f} |"
        )
    lines += ["", f"The {top} slowest tests:", "", "| test | seconds |", "|---|---:|"]
    for r in sorted(records, key=lambda r: -r["seconds"])[:top]:
        lines.append(f"| {r['test']} | {r['seconds']:.1f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("profile", type=Path, help="the JSON-lines file the plugin wrote")
    parser.add_argument("--top", type=int, default=25, help="how many of the slowest tests")
    args = parser.parse_args()
    if not args.profile.is_file():
        raise SystemExit(f"error: no profile at {args.profile} (run make test-profile first)")
    print(table(load(args.profile), args.top))


if __name__ == "__main__":
    main()
