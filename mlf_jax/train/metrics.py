"""Metric writers: a JSON-lines log and TensorBoard event files (no TensorFlow needed)."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

__all__ = ["MetricsWriter"]


def _scalar(v: Any) -> Any:
    return v.item() if hasattr(v, "item") else v


class MetricsWriter:
    """Writes ``<workdir>/metrics.jsonl`` and TensorBoard events under ``<workdir>/tensorboard``.

    Only process 0 writes (pass ``enabled=False`` elsewhere). Each record is
    ``{'step': ..., 'kind': 'train' | 'eval' | ..., **scalars}``.
    """

    def __init__(
        self, workdir: str | os.PathLike, *, enabled: bool = True, tensorboard: bool = True
    ):
        self.enabled = enabled
        self.path = Path(workdir) / "metrics.jsonl"
        self._tb = None
        if enabled:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            if tensorboard:
                from tensorboardX import SummaryWriter

                self._tb = SummaryWriter(os.fspath(Path(workdir) / "tensorboard"))

    def write(self, step: int, kind: str, scalars: Mapping[str, Any]) -> None:
        if not self.enabled:
            return
        record = {"step": int(step), "kind": kind, **{k: _scalar(v) for k, v in scalars.items()}}
        with self.path.open("a") as f:
            f.write(json.dumps(record) + "\n")
        if self._tb is not None:
            for k, v in record.items():
                if k not in ("step", "kind") and isinstance(v, (int, float)):
                    self._tb.add_scalar(f"{kind}/{k}", v, int(step))
            self._tb.flush()

    def close(self) -> None:
        if self._tb is not None:
            self._tb.close()
