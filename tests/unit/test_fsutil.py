"""Durable small-file writes: whole or nothing, no litter, no fixed temporary name."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from downloader.fsutil import atomic_write_bytes


def test_replaces_the_file_whole_and_leaves_no_temporary(tmp_path: Path) -> None:
    path = tmp_path / "rec" / "manifest.json"
    atomic_write_bytes(path, b"old")
    atomic_write_bytes(path, b"new contents")
    assert path.read_bytes() == b"new contents"
    assert [p.name for p in path.parent.iterdir()] == ["manifest.json"]


def test_a_temporary_left_by_another_writer_is_not_reused(tmp_path: Path) -> None:
    """Hosts sharing a folder can have equal pids: the old ``.<name>.<pid>.tmp`` could be
    another writer's file in the middle of its write."""
    path = tmp_path / "manifest.json"
    theirs = tmp_path / f".manifest.json.{os.getpid()}.tmp"
    theirs.write_bytes(b"another writer's half")
    atomic_write_bytes(path, b"ours")
    assert path.read_bytes() == b"ours"
    assert theirs.read_bytes() == b"another writer's half"


def test_a_failed_write_leaves_the_old_file_and_no_litter(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "manifest.json"
    atomic_write_bytes(path, b"old")

    def no_space(fd: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", no_space)
    with pytest.raises(OSError, match="No space"):
        atomic_write_bytes(path, b"new")
    assert path.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["manifest.json"]
