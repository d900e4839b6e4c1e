"""Metric writers: a JSON-lines log and a TensorBoard event file, local or remote.

Both files are kept in memory and rewritten whole at every :meth:`MetricsWriter.write`
(through ``etils.epath``, so ``gs://`` works: remote object stores cannot append),
each with a write to a temporary name and a rename on a local disk, so a kill leaves
either the old or the new file. A run of 100 epochs logs a few thousand records, a
few hundred KB. After a resume from step ``s``, :meth:`MetricsWriter.resume_at` drops
the records of later steps, which the killed run had written after its checkpoint:
``metrics.jsonl`` never holds a step twice.

TensorBoard events are written without TensorFlow (the record framing and protos
come from ``tensorboardX``), one event file per writer, scalars only.
"""

from __future__ import annotations

import itertools
import json
import os
import socket
import struct
import time
from collections.abc import Mapping
from typing import Any

from etils import epath

from mlf_jax.train._notice import notice
from mlf_jax.train._paths import write_atomically

__all__ = ["MetricsWriter", "read_metrics"]

METRICS = "metrics.jsonl"
_WRITERS = itertools.count()  # tells apart the event files of writers in one process
TENSORBOARD = "tensorboard"


def _scalar(v: Any) -> Any:
    return v.item() if hasattr(v, "item") else v


def read_metrics(workdir: str | os.PathLike) -> list[dict[str, Any]]:
    """The records of ``<workdir>/metrics.jsonl`` (empty when there is none); a line that
    is not a record is dropped with a one-line notice (as when a run resumes)."""
    path = epath.Path(workdir) / METRICS
    if not path.exists():
        return []
    return [json.loads(line) for line in _valid_lines(path)]


def _valid_lines(path: epath.Path) -> list[str]:
    """The JSON records of ``path``, each with an integer ``step``; a torn or garbled line
    (a kill mid-write on a file system without atomic renames, a hand edit, bytes that
    are not UTF-8) is dropped with a one-line notice."""
    lines = []
    for i, raw in enumerate(path.read_bytes().split(b"\n"), 1):
        try:
            line = raw.decode("utf-8")
            if line.strip() and isinstance(json.loads(line).get("step"), int):
                lines.append(line)
            elif line.strip():
                raise ValueError("not a record")
        except (ValueError, AttributeError):  # UnicodeDecodeError is a ValueError
            notice(f"dropping unreadable line {i} of {path}")
    return lines


def _record(data: bytes) -> bytes:
    """One TFRecord: length, its masked CRC32C, the data, its masked CRC32C."""
    from tensorboardX.record_writer import masked_crc32c

    header = struct.pack("<Q", len(data))
    return (
        header
        + struct.pack("<I", masked_crc32c(header))
        + data
        + struct.pack("<I", masked_crc32c(data))
    )


def _event(step: int, **fields: Any) -> bytes:
    from tensorboardX.proto import event_pb2

    return _record(event_pb2.Event(wall_time=time.time(), step=step, **fields).SerializeToString())


def _scalar_event(tag: str, value: float, step: int) -> bytes:
    from tensorboardX.proto import summary_pb2

    summary = summary_pb2.Summary(value=[summary_pb2.Summary.Value(tag=tag, simple_value=value)])
    return _event(step, summary=summary)


class MetricsWriter:
    """Writes ``<workdir>/metrics.jsonl`` and TensorBoard events under ``<workdir>/tensorboard``.

    Only process 0 writes (pass ``enabled=False`` elsewhere). Each record is
    ``{'step': ..., 'kind': 'train' | 'eval' | ..., **scalars}``; numbers also go to
    TensorBoard as ``<kind>/<name>``.
    """

    def __init__(
        self, workdir: str | os.PathLike, *, enabled: bool = True, tensorboard: bool = True
    ):
        self.enabled = enabled
        self.workdir = epath.Path(workdir)
        self.path = self.workdir / METRICS
        self._lines: list[str] = []
        self._events: bytearray | None = None
        if not enabled:
            return
        self.workdir.mkdir(parents=True, exist_ok=True)
        if self.path.exists():
            self._lines = _valid_lines(self.path)
        if tensorboard:
            host, pid, n = socket.gethostname(), os.getpid(), next(_WRITERS)
            name = f"events.out.tfevents.{time.time():.0f}.{host}.{pid}.{n}"
            self._events_path = self.workdir / TENSORBOARD / name
            self._events = bytearray(_event(0, file_version="brain.Event:2"))

    def resume_at(self, step: int) -> None:
        """Drops the records of steps after ``step`` (written after the checkpoint that a
        run resumes from) and rewrites the file."""
        if not self.enabled:
            return
        if self._events is not None:  # TensorBoard drops the older events of later steps
            from tensorboardX.proto import event_pb2

            start = event_pb2.SessionLog(status=event_pb2.SessionLog.START)
            self._events += _event(int(step), session_log=start)
        kept = [x for x in self._lines if json.loads(x)["step"] <= step]
        if len(kept) != len(self._lines):
            self._lines = kept
            write_atomically(self.path, "".join(x + "\n" for x in kept).encode())

    def write(self, step: int, kind: str, scalars: Mapping[str, Any]) -> None:
        """Appends one record and rewrites the files."""
        if not self.enabled:
            return
        record = {"step": int(step), "kind": kind, **{k: _scalar(v) for k, v in scalars.items()}}
        self._lines.append(json.dumps(record))
        write_atomically(self.path, "".join(x + "\n" for x in self._lines).encode())
        if self._events is not None:
            for k, v in record.items():
                if k not in ("step", "kind") and isinstance(v, (int, float)):
                    self._events += _scalar_event(f"{kind}/{k}", float(v), int(step))
            self._events_path.parent.mkdir(parents=True, exist_ok=True)
            write_atomically(self._events_path, bytes(self._events))

    def close(self) -> None:
        """Nothing is buffered; kept for symmetry with other writers."""
