"""Writes tiny event files in the real on-disk formats and layouts that tonic reads.

- DVS128 Gesture (tonic's release): ``DVSGesture/ibmGesture{Train,Test}/user<NN>_<lighting>/
  <label>.npy``, each an ``[N, 4]`` array of columns x, y, p, t (t in milliseconds).
- CIFAR10-DVS (tonic's release): ``CIFAR10DVS/<class>/<name>.aedat4`` in the AEDAT 4 container.
- N-MNIST: ``NMNIST/{Train,Test}/<digit>/<name>.bin``, 5 bytes per event.
"""

from __future__ import annotations

import os
import struct
from pathlib import Path

import numpy as np

#: Environment variable that overrides where the shared sample recordings are.
SHARED_ENV = "MLF_JAX_SHARED_DIR"


def shared_events_dir() -> Path:
    """``shared/data/events`` beside the repository (or under ``$MLF_JAX_SHARED_DIR``)."""
    shared = os.environ.get(SHARED_ENV) or Path(__file__).resolve().parents[3] / "shared"
    return Path(shared) / "data" / "events"


def make_events(x, y, p, t) -> np.ndarray:
    """A structured event array with tonic's field names (t in microseconds)."""
    dtype = np.dtype([("x", np.int16), ("y", np.int16), ("p", bool), ("t", np.int64)])
    out = np.zeros(len(t), dtype)
    out["x"], out["y"], out["p"], out["t"] = x, y, p, t
    return out


def random_events(rng: np.random.Generator, n: int, width: int, height: int, duration_us: int):
    """``n`` uniformly random events, sorted by time, starting at a random offset."""
    t = np.sort(rng.integers(0, duration_us, n)) + int(rng.integers(0, 10**6))
    return make_events(
        rng.integers(0, width, n), rng.integers(0, height, n), rng.integers(0, 2, n), t
    )


# ---------------------------------------------------------------------------- DVS128 Gesture


def write_gesture_sample(
    save_to: Path, split: str, user: int, lighting: str, label: int, events: np.ndarray
) -> Path:
    """One gesture as tonic's DVSGesture stores it; ``events['t']`` must be whole milliseconds
    (in microseconds), as in tonic's release."""
    if np.any(events["t"] % 1000):
        raise ValueError("tonic's DVSGesture files hold times in whole milliseconds")
    folder = "ibmGestureTrain" if split == "train" else "ibmGestureTest"
    path = save_to / "DVSGesture" / folder / f"user{user:02d}_{lighting}" / f"{label}.npy"
    path.parent.mkdir(parents=True, exist_ok=True)
    columns = [events["x"], events["y"], events["p"], events["t"] // 1000]
    np.save(path, np.stack([np.asarray(c, np.int64) for c in columns], axis=1))
    return path


# ---------------------------------------------------------------------------- AEDAT 4


def _pad(buf: bytearray, align: int, base: int = 0) -> None:
    while (len(buf) + base) % align:
        buf.append(0)


def _io_header(compression: int, data_table_position: int, xml: str) -> bytes:
    """Size-prefixed flatbuffer IOHeader {compression: int32, dataTablePosition: int64,
    infoNode: string}, laid out by hand (vtable before the table, as readers accept)."""
    text = xml.encode()
    buf = bytearray(8)  # [0:4] root offset, [4:8] identifier
    buf[4:8] = b"IOHE"
    vtable = len(buf)
    buf += struct.pack("<5H", 10, 24, 4, 8, 16)  # sizes, field offsets within the table
    _pad(buf, 8, base=4)  # the int64 at table + 8 must be 8-aligned counting the size prefix
    table = len(buf)
    buf += struct.pack("<i", table - vtable)  # soffset to the vtable
    buf += struct.pack("<i", compression)  # field 0 at +4
    buf += struct.pack("<q", data_table_position)  # field 1 at +8
    buf += struct.pack("<I", 0)  # field 2 at +16 (uoffset, patched below)
    buf += b"\0" * 4  # table size 24
    string = len(buf)
    struct.pack_into("<I", buf, table + 16, string - (table + 16))
    buf += struct.pack("<I", len(text)) + text + b"\0"
    _pad(buf, 4)
    struct.pack_into("<I", buf, 0, table)
    return struct.pack("<I", len(buf)) + bytes(buf)


def _event_packet(events: np.ndarray) -> bytes:
    """Size-prefixed flatbuffer EventPacket {elements: [Event]}, Event = 16-byte struct
    (int64 t, int16 x, int16 y, bool on, 3 pad bytes)."""
    buf = bytearray(8)  # [0:4] root offset, [4:8] identifier
    buf[4:8] = b"EVTS"
    vtable = len(buf)
    buf += struct.pack("<3H", 6, 8, 4)
    _pad(buf, 4)
    table = len(buf)
    buf += struct.pack("<i", table - vtable) + struct.pack("<I", 0)
    # the vector's elements start 4 bytes after its length and must be 8-aligned (with prefix)
    _pad(buf, 8, base=4 + 4)
    vec = len(buf)
    struct.pack_into("<I", buf, table + 4, vec - (table + 4))
    layout = [("t", "<i8"), ("x", "<i2"), ("y", "<i2"), ("p", "?"), ("pad", "V3")]
    packed = np.zeros(len(events), layout)
    for name in ("t", "x", "y", "p"):
        packed[name] = events[name]
    buf += struct.pack("<I", len(events)) + packed.tobytes()
    struct.pack_into("<I", buf, 0, table)
    return struct.pack("<I", len(buf)) + bytes(buf)


def _imu_packet(t: int) -> bytes:
    """Size-prefixed flatbuffer ImuPacket {elements: [Imu]} holding one Imu table {t: int64,
    temperature, accelerometer x/y/z, gyroscope x/y/z, magnetometer x/y/z: float32}."""
    buf = bytearray(8)
    buf[4:8] = b"IMUS"
    vtable = len(buf)
    buf += struct.pack("<3H", 6, 8, 4)
    _pad(buf, 4)
    table = len(buf)
    buf += struct.pack("<iI", table - vtable, 0)
    vec = len(buf)  # a vector of one offset to the Imu table
    struct.pack_into("<I", buf, table + 4, vec - (table + 4))
    buf += struct.pack("<II", 1, 0)
    imu_vtable = len(buf)  # 11 fields: t at +8, the 10 floats at +16 ... +52; table size 56
    buf += struct.pack("<13H", 4 + 2 * 11, 56, 8, *range(16, 56, 4))
    _pad(buf, 8, base=4)  # t at imu + 8 must be 8-aligned counting the size prefix
    imu = len(buf)
    struct.pack_into("<I", buf, vec + 4, imu - (vec + 4))
    buf += struct.pack("<iIq10f", imu - imu_vtable, 0, t, 25.0, *([0.0] * 9))
    struct.pack_into("<I", buf, 0, table)
    return struct.pack("<I", len(buf)) + bytes(buf)


def lz4_frame_stored(data: bytes, block: int = 65536) -> bytes:
    """An LZ4 frame (dependent blocks, no checksums, as DV writes) whose blocks are stored
    uncompressed (high bit of the block size), which every LZ4 decoder must accept."""
    out = bytearray(struct.pack("<I", 0x184D2204) + bytes([0x40, 0x40, 0xC0]))
    for i in range(0, len(data), block):
        chunk = data[i : i + block]
        out += struct.pack("<I", len(chunk) | 0x80000000) + chunk
    return bytes(out + struct.pack("<I", 0))


def write_aedat4(
    path: Path,
    events: np.ndarray,
    *,
    sensor_size: tuple[int, int] = (128, 128),
    compression: str = "lz4",
    packet_events: int = 64,
    extra_stream: bool = True,
) -> Path:
    """An AEDAT 4 file of ``events`` (fields x, y, p, t), ``packet_events`` per packet.

    With ``extra_stream``, an IMU stream (id 1, one sample per packet, never read as events) is
    interleaved, as in real recordings. No trailing file data table (dataTablePosition = -1).
    """
    codes = {"none": 0, "lz4": 1}
    width, height = sensor_size
    xml = (
        '<dv version="2.0">\n    <node name="outInfo" path="/mainloop/Recorder/outInfo/">\n'
        '        <node name="0" path="/mainloop/Recorder/outInfo/0/">\n'
        '            <attr key="compression" type="string">LZ4</attr>\n'
        '            <attr key="typeIdentifier" type="string">EVTS</attr>\n'
        '            <node name="info" path="/mainloop/Recorder/outInfo/0/info/">\n'
        f'                <attr key="sizeX" type="int">{width}</attr>\n'
        f'                <attr key="sizeY" type="int">{height}</attr>\n'
        "            </node>\n        </node>\n"
        '        <node name="1" path="/mainloop/Recorder/outInfo/1/">\n'
        '            <attr key="typeIdentifier" type="string">IMUS</attr>\n'
        "        </node>\n    </node>\n</dv>\n"
    )
    compress = lz4_frame_stored if compression == "lz4" else (lambda b: b)
    out = bytearray(b"#!AER-DAT4.0\r\n" + _io_header(codes[compression], -1, xml))
    for i in range(0, max(len(events), 1), packet_events):
        body = compress(_event_packet(events[i : i + packet_events]))
        out += struct.pack("<iI", 0, len(body)) + body
        if extra_stream:
            t = int(events["t"][i]) if len(events) else 0
            imu = compress(_imu_packet(t))
            out += struct.pack("<iI", 1, len(imu)) + imu
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(bytes(out))
    return path


# ---------------------------------------------------------------------------- N-MNIST


def nmnist_bytes(events: np.ndarray) -> bytes:
    """The original N-MNIST encoding: x, y, then polarity (bit 7) and a 23-bit timestamp."""
    t = np.asarray(events["t"], np.int64)
    if t.size and (t.min() < 0 or t.max() >= 2**23):
        raise ValueError("N-MNIST timestamps are 23-bit")
    raw = np.zeros((len(events), 5), np.uint8)
    raw[:, 0] = events["x"]
    raw[:, 1] = events["y"]
    raw[:, 2] = (np.asarray(events["p"], np.uint8) << 7) | (t >> 16)
    raw[:, 3] = (t >> 8) & 0xFF
    raw[:, 4] = t & 0xFF
    return raw.tobytes()


def write_nmnist_sample(save_to: Path, split: str, label: int, name: str, events) -> Path:
    folder = "Train" if split == "train" else "Test"
    path = save_to / "NMNIST" / folder / str(label) / f"{name}.bin"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(nmnist_bytes(events))
    return path
