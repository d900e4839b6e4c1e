"""MkDocs hook: the figures the results pages show, served from where the experiments write them.

The plots and confusion matrices live beside the results they come from
(``experiments/weights/*.png``, ``experiments/results/*.png``), outside ``docs/``. This hook
adds them to the site under the same paths, so a page links to them as
``../experiments/weights/<name>.png`` (from a page one folder deep) and ``mkdocs build
--strict`` checks those links like any other; nothing is copied into ``docs/``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mkdocs.structure.files import File, Files

ROOT = Path(__file__).resolve().parents[2]
FOLDERS = ("experiments/weights", "experiments/results")


def on_files(files: Files, config: Any) -> Files:
    for folder in FOLDERS:
        for path in sorted((ROOT / folder).glob("*.png")):
            rel = path.relative_to(ROOT).as_posix()
            files.append(File(rel, str(ROOT), config["site_dir"], config["use_directory_urls"]))
    return files
