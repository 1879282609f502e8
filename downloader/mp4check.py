"""Structural check of an MP4 (ISO-BMFF) file (pure over a seekable binary file).

The file must be a sequence of well-formed top-level boxes that ends exactly at EOF, with
``ftyp`` and ``moov`` among them. Only box headers are read, so the cost does not depend on
the file size; run it in a worker thread all the same (it does blocking reads).
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, cast

REQUIRED_BOXES = frozenset({"ftyp", "moov"})
MAX_BOXES = 100_000
_HEADER = struct.Struct(">I4s")
_LARGESIZE = struct.Struct(">Q")


@dataclass(frozen=True)
class Mp4Check:
    ok: bool
    problem: str | None
    boxes: tuple[str, ...]


_TYPE_BYTES = bytes(range(0x20, 0x7F)) + b"\xa9"


def _box_type(raw: bytes) -> str | None:
    """Four printable characters (``©`` = 0xA9 occurs in QuickTime atoms)."""
    if not raw.translate(None, _TYPE_BYTES):  # nothing left once the allowed bytes go
        return raw.decode("latin-1")
    return None


def check_mp4(stream: BinaryIO, size: int | None = None) -> Mp4Check:
    """Walk the top-level boxes of ``stream`` (positioned anywhere; ``size`` defaults to EOF)."""
    if size is None:
        size = stream.seek(0, os.SEEK_END)
    boxes: list[str] = []

    def bad(problem: str) -> Mp4Check:
        return Mp4Check(False, problem, tuple(boxes))

    offset = 0
    while offset < size:
        if len(boxes) >= MAX_BOXES:
            return bad(f"more than {MAX_BOXES} top-level boxes")
        stream.seek(offset)
        head = stream.read(_HEADER.size + _LARGESIZE.size)  # one read, 64-bit size or not
        if len(head) < _HEADER.size:
            return bad(f"truncated box header at offset {offset}")
        box_size, raw_type = _HEADER.unpack_from(head)
        box_type = _box_type(raw_type)
        if box_type is None:
            return bad(f"invalid box type {raw_type!r} at offset {offset}")
        header_size = _HEADER.size
        if box_size == 1:
            if len(head) < _HEADER.size + _LARGESIZE.size:
                return bad(f"truncated 64-bit box size at offset {offset}")
            (box_size,) = _LARGESIZE.unpack_from(head, _HEADER.size)
            header_size += _LARGESIZE.size
        elif box_size == 0:
            box_size = size - offset  # "extends to the end of the file"
        if box_size < header_size:
            return bad(f"box {box_type!r} at offset {offset} has impossible size {box_size}")
        if offset + box_size > size:
            return bad(f"box {box_type!r} at offset {offset} runs past EOF ({size} bytes)")
        boxes.append(box_type)
        offset += box_size
    missing = sorted(REQUIRED_BOXES.difference(boxes))
    if missing:
        return bad(f"missing required box(es): {', '.join(missing)}")
    return Mp4Check(True, None, tuple(boxes))


def check_mp4_path(path: str | os.PathLike[str]) -> Mp4Check:
    with Path(path).open("rb") as stream:
        return check_mp4(stream)


class _PreadStream:
    """The two calls ``check_mp4`` makes (seek, read), as ``pread`` on a borrowed descriptor:
    no ``dup``, no file object, the descriptor's own offset untouched."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.offset = 0

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        if whence != os.SEEK_SET:
            raise ValueError("only absolute seeks")
        self.offset = offset
        return offset

    def read(self, size: int) -> bytes:
        data = os.pread(self.fd, size, self.offset)
        self.offset += len(data)
        return data


def check_mp4_fd(fd: int, size: int) -> Mp4Check:
    """Check through an already-open descriptor (not closed here; its offset is not used).

    Reads only the top-level box headers (a few ``pread`` calls of 8-16 bytes from the page
    cache for a freshly written file), never the body."""
    return check_mp4(cast("BinaryIO", _PreadStream(fd)), size)
