"""AEDAT 4 decoding: tonic's reader (the library's path for CIFAR10-DVS) against the independent
reference reader on the real DVS sample recording, hand-written files read back by tonic, and the
reference reader's own LZ4 decoding by hand."""

import os
import struct

import numpy as np
import pytest
import tonic.datasets
import tonic.io

from mlf_jax.data import neuromorphic

from . import aedat4_reference as reference
from .event_files import SHARED_ENV, make_events, shared_events_dir, write_aedat4

SAMPLE = shared_events_dir() / "sample.aedat4"
needs_sample = pytest.mark.skipif(
    not SAMPLE.is_file(),
    reason=f"real sample recording {SAMPLE} absent (no ../shared beside the clone; set "
    f"{SHARED_ENV} to the directory holding data/events/)",
)


def assert_same_events(theirs: np.ndarray, expected: np.ndarray) -> None:
    """Same events in the same order; fields matched by position (tonic's ``read_aedat4`` names
    polarity ``on``, its ``CIFAR10DVS`` and the reference reader ``p``), values compared."""
    assert len(theirs) == len(expected)
    assert len(theirs.dtype.names) == 4
    for their_name, name in zip(theirs.dtype.names, ("t", "x", "y", "p"), strict=True):
        np.testing.assert_array_equal(theirs[their_name], expected[name])


@needs_sample
def test_real_sample_reference_reader_decodes_to_its_known_facts():
    header = reference.read_aedat4_header(SAMPLE)
    assert header.compression == "lz4"
    assert header.streams[0] == ("EVTS", (320, 240)) and header.event_stream == 0
    ev = reference.read_aedat4(SAMPLE)
    assert ev.dtype == reference.EVENT_DTYPE
    assert len(ev) == 111_954  # README of the sample
    assert ev["x"].max() < 320 and ev["y"].max() < 240  # sensor bounds
    assert ev["x"].max() > 300 and ev["y"].max() > 220  # and the whole sensor is used
    t = ev["t"].astype(np.int64)
    assert np.all(np.diff(t) >= 0)  # monotone timestamps (microseconds)
    assert 0.58e6 < t[-1] - t[0] < 0.60e6  # ~0.59 s
    assert 0.3 < ev["p"].mean() < 0.7  # both polarities


@needs_sample
def test_real_sample_tonics_reader_matches_the_reference(tmp_path):
    expected = reference.read_aedat4(SAMPLE)
    theirs = tonic.io.read_aedat4(str(SAMPLE))
    assert theirs.dtype.names == ("t", "x", "y", "on")
    assert_same_events(theirs, expected)
    # the library's path: the recording in tonic's CIFAR10DVS layout, read by RawEvents
    for name in tonic.datasets.CIFAR10DVS.classes:
        (tmp_path / "CIFAR10DVS" / name).mkdir(parents=True)
        os.symlink(SAMPLE, tmp_path / "CIFAR10DVS" / name / "cifar10_sample_0.aedat4")
    raw = neuromorphic.raw_events("cifar10_dvs", tmp_path, "test")  # floor(0.9 * 1) = 0 train
    assert len(raw) == 10
    events, label = raw[9]
    assert label == 9 and events.dtype.names == tonic.datasets.CIFAR10DVS.dtype.names
    assert_same_events(events, expected)


def random_written_events(n: int) -> np.ndarray:
    rng = np.random.default_rng(0)
    return make_events(
        rng.integers(0, 128, n),
        rng.integers(0, 128, n),
        rng.integers(0, 2, n),
        np.sort(rng.integers(0, 2**40, n)),
    )


@pytest.mark.parametrize("compression", ["none", "lz4"])
def test_written_files_are_read_back_by_tonic_exactly(tmp_path, compression):
    """The hand-written files are valid AEDAT 4 (aedat verifies each packet's flatbuffer)."""
    events = random_written_events(1000)
    path = write_aedat4(tmp_path / "a.aedat4", events, compression=compression, packet_events=97)
    assert_same_events(tonic.io.read_aedat4(str(path)), events)  # the IMU stream is skipped
    empty = tonic.io.read_aedat4(str(write_aedat4(tmp_path / "e.aedat4", events[:0])))
    assert len(empty) == 0


@pytest.mark.parametrize("compression", ["none", "lz4"])
def test_reference_reader_reads_written_files(tmp_path, compression):
    events = random_written_events(1000)
    path = write_aedat4(tmp_path / "a.aedat4", events, compression=compression, packet_events=97)
    header = reference.read_aedat4_header(path)
    assert header.compression == compression and header.streams[0] == ("EVTS", (128, 128))
    assert_same_events(reference.read_aedat4(path), events)  # the IMU stream is skipped
    empty = reference.read_aedat4(write_aedat4(tmp_path / "e.aedat4", events[:0]))
    assert len(empty) == 0 and empty.dtype == reference.EVENT_DTYPE


def test_not_aedat4(tmp_path):
    path = tmp_path / "x.aedat4"
    path.write_bytes(b"#!AER-DAT3.1\r\n" + b"\0" * 64)
    with pytest.raises(ValueError, match="not an AEDAT 4.0 file"):
        reference.read_aedat4(path)
    with pytest.raises(RuntimeError, match="magic number"):
        tonic.io.read_aedat4(str(path))


def _frame(block: bytes) -> bytes:
    return (
        struct.pack("<I", 0x184D2204)
        + bytes([0x60, 0x40, 0x82])  # version 1, independent blocks, 64 KB; HC not checked
        + struct.pack("<I", len(block))
        + block
        + struct.pack("<I", 0)
    )


def test_reference_lz4_blocks_by_hand():
    lz4 = reference.lz4_frame_decompress
    # token 0x22: 2 literals "ab", then a match of 2 + 4 = 6 bytes at offset 2 (overlapping)
    # then a last sequence of 1 literal "c" (token 0x10)
    block = bytes([0x22]) + b"ab" + struct.pack("<H", 2) + bytes([0x10]) + b"c"
    assert lz4(_frame(block)) == b"ababababc"
    # literal length 15 + 255 + 3 = 273 (extension bytes), match length 15 + 4 + 1 = 20 at offset 1
    lit = bytes(range(256)) + bytes(17)
    block = bytes([0xFF, 255, 3]) + lit + struct.pack("<H", 1) + bytes([1, 0x00])
    assert lz4(_frame(block)) == lit + bytes(20)
    # non-overlapping match copies an earlier run; two concatenated frames; a skippable frame
    block = bytes([0x51]) + b"hello" + struct.pack("<H", 5) + bytes([0x10]) + b"!"
    skippable = struct.pack("<II", 0x184D2A53, 3) + b"xyz"
    data = _frame(block) + skippable + _frame(block)
    assert lz4(data) == b"hellohello!" * 2
    with pytest.raises(ValueError, match="match offset"):
        lz4(_frame(bytes([0x10]) + b"a" + struct.pack("<H", 9) + b"\0"))
    with pytest.raises(ValueError, match="truncated"):
        lz4(_frame(bytes([0xF0, 255])))  # literal length runs off the end
    with pytest.raises(ValueError, match="not supported"):
        lz4(b"\x28\xb5\x2f\xfd" + b"\0" * 8)  # a zstd frame
