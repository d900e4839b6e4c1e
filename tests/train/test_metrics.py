"""Metric files: JSON lines without duplicate steps after a resume, and TensorBoard events
in the TFRecord framing (checked with an independent CRC32C) that decode to the scalars."""

import struct

import google_crc32c
import pytest
from tensorboardX.proto import event_pb2

from mlf_jax.train import MetricsWriter, read_metrics


def _masked(data: bytes) -> int:
    """TFRecord's masked CRC32C, from google-crc32c (not tensorboardX's implementation)."""
    crc = google_crc32c.value(data)
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def _events(path):
    data, out = path.read_bytes(), []
    while data:
        (length,) = struct.unpack("<Q", data[:8])
        assert struct.unpack("<I", data[8:12])[0] == _masked(data[:8])
        body = data[12 : 12 + length]
        assert struct.unpack("<I", data[12 + length : 16 + length])[0] == _masked(body)
        out.append(event_pb2.Event.FromString(body))
        data = data[16 + length :]
    return out


def test_jsonl_and_tensorboard_scalars(tmp_path):
    w = MetricsWriter(tmp_path)
    w.write(1, "train", {"loss": 0.5, "accuracy": 0.25})
    w.write(2, "eval", {"test_accuracy": 0.75})
    assert read_metrics(tmp_path) == [
        {"step": 1, "kind": "train", "loss": 0.5, "accuracy": 0.25},
        {"step": 2, "kind": "eval", "test_accuracy": 0.75},
    ]
    (events_file,) = (tmp_path / "tensorboard").iterdir()
    events = _events(events_file)
    assert events[0].file_version == "brain.Event:2"
    scalars = [(e.step, v.tag, v.simple_value) for e in events[1:] for v in e.summary.value]
    assert scalars == [(1, "train/loss", 0.5), (1, "train/accuracy", 0.25),
                       (2, "eval/test_accuracy", 0.75)]  # fmt: skip


def test_resume_drops_later_records_and_marks_the_restart(tmp_path):
    w = MetricsWriter(tmp_path)
    for step in (1, 2, 3):
        w.write(step, "train", {"loss": float(step)})
    again = MetricsWriter(tmp_path)  # a restart after a kill: the checkpoint was at step 2
    again.resume_at(2)
    again.write(3, "train", {"loss": 30.0})
    assert [(r["step"], r["loss"]) for r in read_metrics(tmp_path)] == [
        (1, 1.0), (2, 2.0), (3, 30.0)
    ]  # fmt: skip
    # tensorboardX names each file ...tfevents.<time>.<host>.<pid>.<n>, n counting the
    # writers of the process (the whole number: 39 comes before 40)
    files = (tmp_path / "tensorboard").iterdir()
    first, second = sorted(files, key=lambda p: int(p.name.rsplit(".", 1)[1]))
    assert len(_events(first)) == 4  # the killed run's events are kept
    starts = [e.step for e in _events(second) if e.HasField("session_log")]
    assert starts == [2]  # and TensorBoard discards those after step 2


@pytest.mark.parametrize("enabled", [False])
def test_a_disabled_writer_writes_nothing(tmp_path, enabled):
    w = MetricsWriter(tmp_path / "w", enabled=enabled)
    w.write(1, "train", {"loss": 1.0})
    w.resume_at(0)
    assert not (tmp_path / "w").exists()


def test_a_full_disk_names_the_file_and_leaves_no_temporary(tmp_path, monkeypatch):
    import errno
    import pathlib

    writer = MetricsWriter(tmp_path, tensorboard=False)
    writer.write(1, "train", {"loss": 1.0})
    before = (tmp_path / "metrics.jsonl").read_text()

    def full_disk(self, data):  # as a write to a full disk: the file is created, then ENOSPC
        open(self, "wb").close()
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(pathlib.Path, "write_bytes", full_disk)
    with pytest.raises(OSError, match=r"could not write .*metrics\.jsonl \(No space left") as e:
        writer.write(2, "train", {"loss": 0.5})
    assert e.value.errno == errno.ENOSPC
    assert sorted(p.name for p in tmp_path.iterdir()) == ["metrics.jsonl"]  # no .tmp left
    assert (tmp_path / "metrics.jsonl").read_text() == before


def test_lines_that_are_not_records_are_dropped_with_a_notice_whatever_their_bytes(tmp_path, capfd):
    w = MetricsWriter(tmp_path)
    w.write(1, "train", {"loss": 0.5})
    with (tmp_path / "metrics.jsonl").open("ab") as f:
        f.write(b'{"step": 2, "kind": "tr\xff\xfe\x80ain"}\n')  # not UTF-8
        f.write(b'{"step": 3, "kind": "eval"}\n')
        f.write(b'{"step": 4, "ki')  # torn
    capfd.readouterr()
    assert [r["step"] for r in read_metrics(tmp_path)] == [1, 3]
    resumed = MetricsWriter(tmp_path)
    resumed.resume_at(3)
    err = capfd.readouterr().err.strip().splitlines()
    assert (
        err
        == [
            f"mlf_jax: dropping unreadable line {i} of {tmp_path / 'metrics.jsonl'}" for i in (2, 4)
        ]
        * 2
    )
    assert [r["step"] for r in read_metrics(tmp_path)] == [1, 3]
