"""Structurally valid MP4 files of an exact size, generated on demand (pure).

Layout, tiling the file exactly::

    ftyp (32 B) │ mdat header (8/16 B) │ unique prefix │ pseudo-random payload … │ moov (116 B)

No file is ever held in memory: any byte range is computed from a shared 1 MiB random block
(read at an offset keyed by part and version) plus a unique prefix, so tens of thousands of
distinct parts cost nothing and a Range request costs only the bytes it returns.
"""

from __future__ import annotations

import hashlib
import random
import struct
from collections.abc import Iterator
from dataclasses import dataclass

BLOCK_SIZE = 1 << 20
CHUNK_SIZE = 64 * 1024
_FTYP = struct.pack(
    ">I4s4sI4s4s4s4s", 32, b"ftyp", b"isom", 0x200, b"isom", b"iso2", b"avc1", b"mp41"
)
_MATRIX = struct.pack(">9I", 0x10000, 0, 0, 0, 0x10000, 0, 0, 0, 0x40000000)
_PREFIX_SIZE = 64
_MP4_EPOCH_OFFSET = 2_082_844_800  # seconds from 1904-01-01 to 1970-01-01


def random_block(seed: int) -> bytes:
    return random.Random(f"recall-sim-media:{seed}").randbytes(BLOCK_SIZE)


def _mvhd(duration_ms: int, created_unix: int) -> bytes:
    stamp = (created_unix + _MP4_EPOCH_OFFSET) & 0xFFFFFFFF
    body = (
        struct.pack(">B3xIIII", 0, stamp, stamp, 1000, min(duration_ms, 0xFFFFFFFF))
        + struct.pack(">IH10x", 0x10000, 0x100)  # rate 1.0, volume 1.0, reserved
        + _MATRIX
        + bytes(24)  # pre_defined
        + struct.pack(">I", 2)  # next_track_ID
    )
    return struct.pack(">I4s", 8 + len(body), b"mvhd") + body


def _moov(duration_ms: int, created_unix: int) -> bytes:
    mvhd = _mvhd(duration_ms, created_unix)
    return struct.pack(">I4s", 8 + len(mvhd), b"moov") + mvhd


@dataclass(frozen=True)
class Mp4Object:
    """One version of one part: ``read(start, end)`` returns bytes ``[start, end)``."""

    size: int
    header: bytes
    trailer: bytes
    block: bytes
    block_offset: int

    def read(self, start: int, end: int) -> bytes:
        start, end = max(0, start), min(end, self.size)
        if start >= end:
            return b""
        payload_end = self.size - len(self.trailer)
        out = bytearray()
        if start < len(self.header):
            out += self.header[start : min(end, len(self.header))]
        lo, hi = max(start, len(self.header)), min(end, payload_end)
        if lo < hi:
            out += self._payload(lo - len(self.header), hi - len(self.header))
        if end > payload_end:
            out += self.trailer[max(start, payload_end) - payload_end : end - payload_end]
        return bytes(out)

    def chunks(self, start: int, end: int, chunk_size: int = CHUNK_SIZE) -> Iterator[bytes]:
        for offset in range(start, end, chunk_size):
            yield self.read(offset, min(end, offset + chunk_size))

    def _payload(self, lo: int, hi: int) -> bytes:
        out = bytearray()
        position = (self.block_offset + lo) % BLOCK_SIZE
        remaining = hi - lo
        while remaining:
            take = min(remaining, BLOCK_SIZE - position)
            out += self.block[position : position + take]
            remaining -= take
            position = 0
        return bytes(out)


def build(
    size: int, key: str, block: bytes, *, duration_seconds: float = 0.0, created_unix: int = 0
) -> Mp4Object:
    """The MP4 for ``key`` (e.g. ``"<part id>:v<version>"``) of exactly ``size`` bytes."""
    trailer = _moov(int(duration_seconds * 1000), created_unix)
    mdat_size = size - len(_FTYP) - len(trailer)
    large = mdat_size > 0xFFFFFFFF
    mdat_header = (
        struct.pack(">I4sQ", 1, b"mdat", mdat_size)
        if large
        else struct.pack(">I4s", mdat_size, b"mdat")
    )
    prefix = f"recall-sim {key}".encode()[:_PREFIX_SIZE].ljust(_PREFIX_SIZE, b"\0")
    header = _FTYP + mdat_header + prefix
    if len(header) + len(trailer) > size:
        raise ValueError(f"an MP4 needs at least {len(header) + len(trailer)} bytes")
    digest = hashlib.sha256(key.encode()).digest()
    return Mp4Object(size, header, trailer, block, int.from_bytes(digest[:4], "big") % BLOCK_SIZE)


def top_level_boxes(data: bytes) -> list[tuple[str, int, int]]:
    """``[(type, offset, size), ...]`` of the top-level boxes; raises unless they tile ``data``."""
    boxes = []
    offset = 0
    while offset < len(data):
        if offset + 8 > len(data):
            raise ValueError(f"truncated box header at {offset}")
        size, kind = struct.unpack_from(">I4s", data, offset)
        if size == 1:
            (size,) = struct.unpack_from(">Q", data, offset + 8)
        elif size == 0:
            size = len(data) - offset
        if size < 8 or offset + size > len(data):
            raise ValueError(f"box {kind!r} at {offset} has bad size {size}")
        boxes.append((kind.decode("latin-1"), offset, size))
        offset += size
    return boxes
