"""The structural MP4 check (pure over a file object)."""

from __future__ import annotations

import io
import struct
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from downloader.mp4check import check_mp4, check_mp4_path


def box(kind: bytes, payload: bytes = b"") -> bytes:
    return struct.pack(">I4s", 8 + len(payload), kind) + payload


def large_box(kind: bytes, payload: bytes = b"") -> bytes:
    return struct.pack(">I4sQ", 1, kind, 16 + len(payload)) + payload


FTYP = box(b"ftyp", b"isom\x00\x00\x02\x00isomiso2")
MOOV = box(b"moov", box(b"mvhd", bytes(100)))
GOOD = FTYP + box(b"mdat", b"\x00" * 1000) + MOOV


def minimal_mp4(payload: bytes = b"") -> bytes:
    return FTYP + box(b"mdat", payload) + MOOV


@pytest.mark.parametrize(
    "data",
    [
        GOOD,
        FTYP + MOOV,
        FTYP + MOOV + box(b"free", b"xx"),
        FTYP + large_box(b"mdat", b"z" * 50) + MOOV,
        FTYP + MOOV + struct.pack(">I4s", 0, b"mdat") + b"to the end",  # size 0 = to EOF
        FTYP + box(b"\xa9nam") + MOOV,
    ],
)
def test_well_formed(data: bytes) -> None:
    report = check_mp4(io.BytesIO(data))
    assert report.ok, report.problem
    assert report.problem is None


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        (b"", "missing required box"),
        (GOOD[:-1], "runs past EOF"),
        (GOOD + b"\x00", "truncated box header"),
        (GOOD + struct.pack(">I4s", 4, b"free"), "impossible size"),
        (FTYP + box(b"mdat"), "missing required box(es): moov"),
        (MOOV, "missing required box(es): ftyp"),
        (FTYP + b"\x00\x00\x00\x10\x01\x02\x03\x04" + bytes(8) + MOOV, "invalid box type"),
        (FTYP + MOOV + struct.pack(">I4sI", 1, b"mdat", 0), "truncated 64-bit"),
        (FTYP + struct.pack(">I4sQ", 1, b"mdat", 8) + MOOV, "impossible size"),
        (b"<html>not a video</html>", "runs past EOF"),
        (b"\x00\x00\x00\x08\x00\x01\x02\x03", "invalid box type"),
    ],
)
def test_malformed(data: bytes, problem: str) -> None:
    report = check_mp4(io.BytesIO(data))
    assert not report.ok
    assert report.problem is not None
    assert problem in report.problem


def test_path_and_size_limit(tmp_path: Path) -> None:
    path = tmp_path / "a.mp4"
    path.write_bytes(GOOD + b"extra")
    assert not check_mp4_path(path).ok
    with path.open("rb") as stream:
        assert check_mp4(stream, size=len(GOOD)).ok  # only the first ``size`` bytes count


@given(st.binary(max_size=200))
def test_any_bytes_give_a_verdict(data: bytes) -> None:
    report = check_mp4(io.BytesIO(data))
    assert report.ok == (report.problem is None)


@given(st.binary(max_size=64), st.integers(min_value=1, max_value=200))
def test_any_truncation_of_a_good_file_is_rejected(payload: bytes, cut: int) -> None:
    data = minimal_mp4(payload)
    cut = min(cut, len(data))
    assert not check_mp4(io.BytesIO(data[:-cut])).ok
