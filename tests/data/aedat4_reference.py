"""Reference reader of AEDAT 4 event files (the container of tonic's CIFAR10-DVS), numpy only.

The library decodes ``.aedat4`` with tonic's ``tonic.io.read_aedat4`` (the ``aedat`` package,
Rust). This independent implementation, written from the format description below, is what the
tests compare tonic's reader with, on the real sample recording. It decodes uncompressed and
LZ4-compressed files (its own LZ4 frame decoder; DV software writes LZ4 by default), not ZSTD.

Layout of a file (DV / dv-processing, AEDAT 4.0):

- the line ``#!AER-DAT4.0\\r\\n``;
- a little-endian uint32 size, then a flatbuffer ``IOHeader`` (identifier ``IOHE``) with the
  fields ``compression`` (int32: 0 none, 1 LZ4, 2 LZ4 high, 3 ZSTD, 4 ZSTD high),
  ``dataTablePosition`` (int64 file offset of the trailing table, -1 when absent) and
  ``infoNode`` (an XML string describing each stream: ``typeIdentifier`` such as ``EVTS``,
  and ``sizeX``/``sizeY`` of the sensor);
- packets up to ``dataTablePosition`` (or the end of the file): int32 stream id, int32 byte
  size, then that many bytes: a size-prefixed flatbuffer, compressed as one LZ4 frame per
  packet when the header says so. Event packets (identifier ``EVTS``) hold one vector of
  16-byte structs: int64 timestamp (microseconds), int16 x, int16 y, bool polarity, 3 pad bytes.
"""

from __future__ import annotations

import dataclasses
import os
import struct
import xml.etree.ElementTree as ET

import numpy as np

MAGIC = b"#!AER-DAT4.0\r\n"

#: Events as tonic's ``CIFAR10DVS`` delivers them (``aedat``'s layout with ``on`` named ``p``).
EVENT_DTYPE = np.dtype([("t", "<u8"), ("x", "<u2"), ("y", "<u2"), ("p", "?")])

#: One event as stored in an ``EVTS`` packet.
_PACKED_EVENT = np.dtype(
    {
        "names": ["t", "x", "y", "p"],
        "formats": ["<i8", "<i2", "<i2", "?"],
        "offsets": [0, 8, 10, 12],
        "itemsize": 16,
    }
)

_COMPRESSION = {0: "none", 1: "lz4", 2: "lz4", 3: "zstd", 4: "zstd"}

_LZ4_MAGIC = 0x184D2204
_LZ4_LEGACY_MAGIC = 0x184C2102


@dataclasses.dataclass(frozen=True)
class Aedat4Header:
    """What the header of an AEDAT 4 file says.

    Attributes:
      compression: ``'none'``, ``'lz4'`` or ``'zstd'``.
      data_table_position: file offset where the packets end (-1: they run to the end).
      packets_start: file offset of the first packet.
      streams: stream id -> ``(type identifier, (sizeX, sizeY) or None)``.
    """

    compression: str
    data_table_position: int
    packets_start: int
    streams: dict[int, tuple[str, tuple[int, int] | None]]

    @property
    def event_stream(self) -> int | None:
        """The lowest stream id of type ``EVTS`` (the one tonic reads), or None."""
        ids = [i for i, (kind, _) in self.streams.items() if kind == "EVTS"]
        return min(ids) if ids else None


def _table_fields(buf: bytes, table: int) -> tuple[int, ...]:
    """Field offsets (0 = absent) of the flatbuffer table at ``table``."""
    vtable = table - struct.unpack_from("<i", buf, table)[0]
    vtable_size = struct.unpack_from("<H", buf, vtable)[0]
    return struct.unpack_from(f"<{(vtable_size - 4) // 2}H", buf, vtable + 4)


def _root(buf: bytes, identifier: bytes, what: str) -> tuple[int, tuple[int, ...]]:
    """Root table position and its field offsets; checks the 4-byte file identifier."""
    if len(buf) < 8 or buf[4:8] != identifier:
        raise ValueError(f"{what}: expected a flatbuffer {identifier!r}, got {buf[4:8]!r}")
    table = struct.unpack_from("<I", buf, 0)[0]
    return table, _table_fields(buf, table)


def _parse_streams(xml: str) -> dict[int, tuple[str, tuple[int, int] | None]]:
    streams: dict[int, tuple[str, tuple[int, int] | None]] = {}
    root = ET.fromstring(xml)
    for out_info in root.iter("node"):
        if out_info.get("name") != "outInfo":
            continue
        for node in out_info.findall("node"):
            if not (node.get("name") or "").isdigit():
                continue
            attrs = {a.get("key"): (a.text or "") for a in node.findall("attr")}
            info = {a.get("key"): (a.text or "") for a in node.findall("node/attr")}
            size = None
            if info.get("sizeX", "").isdigit() and info.get("sizeY", "").isdigit():
                size = (int(info["sizeX"]), int(info["sizeY"]))
            streams[int(node.get("name"))] = (attrs.get("typeIdentifier", ""), size)
    return streams


def read_aedat4_header(path: str | os.PathLike) -> Aedat4Header:
    """Reads the header of an AEDAT 4 file.

    Raises:
      ValueError: when the file is not AEDAT 4 or its header is malformed.
    """
    with open(path, "rb") as f:
        start = f.read(len(MAGIC) + 4)
        if start[: len(MAGIC)] != MAGIC:
            raise ValueError(f"{path}: not an AEDAT 4.0 file (starts with {start[:14]!r})")
        (size,) = struct.unpack_from("<I", start, len(MAGIC))
        buf = f.read(size)
    if len(buf) != size:
        raise ValueError(f"{path}: truncated AEDAT 4 header")
    try:
        table, fields = _root(buf, b"IOHE", os.fspath(path))
        field = lambda i: fields[i] if i < len(fields) else 0
        compression = struct.unpack_from("<i", buf, table + field(0))[0] if field(0) else 0
        position = struct.unpack_from("<q", buf, table + field(1))[0] if field(1) else -1
        xml = ""
        if field(2):
            s = table + field(2)
            s += struct.unpack_from("<I", buf, s)[0]
            xml = buf[s + 4 : s + 4 + struct.unpack_from("<I", buf, s)[0]].decode("utf-8")
        streams = _parse_streams(xml) if xml else {}
    except (struct.error, ET.ParseError, UnicodeDecodeError) as e:
        raise ValueError(f"{path}: malformed AEDAT 4 header ({e})") from e
    if compression not in _COMPRESSION:
        raise ValueError(f"{path}: unknown AEDAT 4 compression type {compression}")
    return Aedat4Header(_COMPRESSION[compression], position, len(MAGIC) + 4 + size, streams)


def _lz4_block(src: bytes, out: bytearray) -> None:
    """Appends the decoded LZ4 block ``src`` to ``out`` (matches may reach into ``out``)."""
    i, n = 0, len(src)
    while i < n:
        token = src[i]
        i += 1
        length = token >> 4
        if length == 15:
            while True:
                b = src[i]
                i += 1
                length += b
                if b != 255:
                    break
        out += src[i : i + length]
        i += length
        if i >= n:  # the last sequence has literals only
            break
        offset = src[i] | (src[i + 1] << 8)
        i += 2
        length = token & 15
        if length == 15:
            while True:
                b = src[i]
                i += 1
                length += b
                if b != 255:
                    break
        length += 4
        start = len(out) - offset
        if offset == 0 or start < 0:
            raise ValueError(f"corrupt LZ4 block: match offset {offset} at output {len(out)}")
        if offset >= length:
            out += out[start : start + length]
        else:  # overlapping copy repeats the last `offset` bytes
            pattern = out[start:]
            reps, rest = divmod(length, offset)
            out += pattern * reps + pattern[:rest]
    if i > n:
        raise ValueError("corrupt LZ4 block: truncated")


def lz4_frame_decompress(data: bytes) -> bytes:
    """Decompresses LZ4 frames (the LZ4 frame format, v1.6; checksums are not verified).

    Handles concatenated and skippable frames, dependent and independent blocks and
    uncompressed blocks; not dictionaries or the legacy format.

    Raises:
      ValueError: for data that is not LZ4 frames, or corrupt frames.
    """
    try:
        return _lz4_frames(data)
    except (IndexError, struct.error) as e:
        raise ValueError(f"corrupt LZ4 frame: truncated ({e})") from e


def _lz4_frames(data: bytes) -> bytes:
    out = bytearray()
    pos, n = 0, len(data)
    while pos < n:
        if n - pos < 4:
            raise ValueError("corrupt LZ4 frame: trailing bytes")
        (magic,) = struct.unpack_from("<I", data, pos)
        if magic & 0xFFFFFFF0 == 0x184D2A50:  # skippable frame
            pos += 8 + struct.unpack_from("<I", data, pos + 4)[0]
            continue
        if magic != _LZ4_MAGIC:
            kind = "legacy LZ4 frames are" if magic == _LZ4_LEGACY_MAGIC else "data is"
            raise ValueError(f"{kind} not supported (magic number {magic:#010x})")
        flg = data[pos + 4]
        if flg >> 6 != 1:
            raise ValueError(f"unsupported LZ4 frame version {flg >> 6}")
        if flg & 1:
            raise ValueError("LZ4 frames with a dictionary are not supported")
        block_checksum, content_size, content_checksum = flg & 0x10, flg & 0x08, flg & 0x04
        pos += 4 + 2 + (8 if content_size else 0) + 1  # magic, FLG, BD, content size, HC
        while True:
            (size,) = struct.unpack_from("<I", data, pos)
            pos += 4
            if size == 0:  # end mark
                break
            raw, size = size & 0x80000000, size & 0x7FFFFFFF
            block = data[pos : pos + size]
            if len(block) != size:
                raise ValueError("corrupt LZ4 frame: truncated block")
            if raw:
                out += block
            else:
                _lz4_block(block, out)
            pos += size + (4 if block_checksum else 0)
        pos += 4 if content_checksum else 0
    return bytes(out)


def _decompress(raw: bytes, compression: str, path: str | os.PathLike) -> bytes:
    if compression == "none":
        return raw
    if compression == "lz4":
        return lz4_frame_decompress(raw)
    raise ValueError(f"{path}: the reference reader does not decode {compression} packets")


def _packet_events(buf: bytes, path: str | os.PathLike) -> np.ndarray:
    """The events of one decompressed, size-prefixed ``EVTS`` flatbuffer."""
    raw = buf[4:]  # size prefix
    table, fields = _root(raw, b"EVTS", f"{os.fspath(path)}: event packet")
    if not fields or not fields[0]:
        return np.zeros(0, _PACKED_EVENT)
    vec = table + fields[0]
    vec += struct.unpack_from("<I", raw, vec)[0]
    count = struct.unpack_from("<I", raw, vec)[0]
    if vec + 4 + 16 * count > len(raw):
        raise ValueError(f"{path}: truncated event packet")
    return np.frombuffer(raw, _PACKED_EVENT, count=count, offset=vec + 4)


def read_aedat4(path: str | os.PathLike) -> np.ndarray:
    """Events of the first event stream of an AEDAT 4 file, as tonic's ``CIFAR10DVS`` gives them.

    Returns:
      a structured array with fields ``t`` (uint64, microseconds), ``x``, ``y`` (uint16),
      ``p`` (bool), the dtype tonic's ``CIFAR10DVS`` uses.

    Raises:
      ValueError: when the file is malformed or has no event stream.
    """
    header = read_aedat4_header(path)
    stream = header.event_stream
    if stream is None and header.streams:
        raise ValueError(f"{path}: no event stream (streams: {header.streams})")
    parts = []
    with open(path, "rb") as f:
        f.seek(header.packets_start)
        pos = header.packets_start
        while header.data_table_position < 0 or pos < header.data_table_position:
            head = f.read(8)
            if len(head) < 8:
                break
            stream_id, size = struct.unpack("<iI", head)
            raw = f.read(size)
            if len(raw) != size:
                raise ValueError(f"{path}: truncated packet at offset {pos}")
            pos += 8 + size
            if stream is not None and stream_id != stream:
                continue
            buf = _decompress(raw, header.compression, path)
            if stream is None and buf[8:12] != b"EVTS":  # no XML: take EVTS packets
                continue
            events = _packet_events(buf, path)
            if not len(events):
                continue
            parts.append(events)
    if not parts and stream is None:
        raise ValueError(f"{path}: no event stream")
    packed = np.concatenate(parts) if parts else np.zeros(0, _PACKED_EVENT)
    out = np.empty(len(packed), EVENT_DTYPE)
    for name in EVENT_DTYPE.names:
        out[name] = packed[name]
    return out
