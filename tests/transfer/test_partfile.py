"""Blocking file operations: pwritev + hash, prefix re-hash, symlinks, ENOSPC, tuning."""

from __future__ import annotations

import errno
import gc
import hashlib
import os
from pathlib import Path

import pytest

from downloader.transfer.partfile import FsyncFailed, PartFile, partial_path, publish
from downloader.tuning import freeze_startup_objects, tune_allocator


def test_write_hash_and_resume(tmp_path: Path) -> None:
    path = tmp_path / "x.mp4.part"
    data = os.urandom(3 << 20)
    pf = PartFile.open(path)
    try:
        head = data[: 2 << 20]
        chunks = [head[i : i + 100_000] for i in range(0, len(head), 100_000)]
        pf.write(chunks, 0, sync=True)
        assert pf.hashed == 2 << 20
        pf.write([data[2 << 20 :]], 2 << 20, sync=False)
        assert pf.hexdigest() == hashlib.sha256(data).hexdigest()
    finally:
        pf.close()
    again = PartFile.open(path)
    try:
        again.reset(1_234_567)  # trust only a prefix, re-hash it
        assert again.size() == 1_234_567
        again.write([data[1_234_567:]], 1_234_567, sync=True)
        assert again.hexdigest() == hashlib.sha256(data).hexdigest()
        with pytest.raises(RuntimeError, match="hashed"):
            again.write([b"x"], 5, sync=False)
    finally:
        again.close()
    assert path.read_bytes() == data


def test_many_small_chunks_exceed_iov_max(tmp_path: Path) -> None:
    pf = PartFile.open(tmp_path / "p")
    chunks = [bytes([i % 256]) * 7 for i in range(5000)]
    try:
        pf.write(chunks, 0, sync=False)
    finally:
        pf.close()
    assert (tmp_path / "p").read_bytes() == b"".join(chunks)


def test_symlink_is_not_followed(tmp_path: Path) -> None:
    victim = tmp_path / "victim"
    victim.write_bytes(b"precious")
    link = tmp_path / "x.mp4.part"
    link.symlink_to(victim)
    with pytest.raises(OSError, match="symbolic links") as info:
        PartFile.open(link)
    assert info.value.errno == errno.ELOOP
    assert victim.read_bytes() == b"precious"


def test_refuses_non_regular_file(tmp_path: Path) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    with pytest.raises(OSError, match="not a regular file"):
        PartFile.open(fifo)


def test_dev_full_raises_enospc() -> None:
    fd = os.open("/dev/full", os.O_RDWR)
    pf = PartFile(Path("/dev/full"), fd)
    try:
        with pytest.raises(OSError, match="No space left") as info:
            pf.write([b"x" * 4096], 0, sync=False)
        assert info.value.errno == errno.ENOSPC
        assert pf.hashed == 0  # nothing counted that did not reach the file
    finally:
        pf.close()


def test_fsync_error_is_marked(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def failing_fsync(fd: int) -> None:
        raise OSError(errno.EIO, "I/O error")

    pf = PartFile.open(tmp_path / "p")
    monkeypatch.setattr(os, "fsync", failing_fsync)
    try:
        with pytest.raises(FsyncFailed):
            pf.write([b"abc"], 0, sync=True)
    finally:
        pf.close()


def _cached(fd: int, offset: int) -> bool:
    """Whether the page at ``offset`` is in the page cache (a read that may not wait)."""
    try:
        os.preadv(fd, [bytearray(4096)], offset, os.RWF_NOWAIT)
    except BlockingIOError:
        return False
    return True


def test_pages_leave_the_page_cache_once_fsynced(tmp_path: Path) -> None:
    """What an fsync made durable is released; what is only written stays cached (it may
    still be dirty, and releasing it would start writing early for nothing)."""
    data = os.urandom(3 << 20)
    pf = PartFile.open(tmp_path / "p")
    try:
        pf.write([data[: 1 << 20]], 0, sync=False)
        assert _cached(pf.fd, 0)
        pf.write([data[1 << 20 : 2 << 20]], 1 << 20, sync=True)
        assert not _cached(pf.fd, 0)
        assert not _cached(pf.fd, (2 << 20) - 4096)
        report = pf.finish([data[2 << 20 :]], 2 << 20, verify=False)
        assert report.ok
        assert not _cached(pf.fd, (3 << 20) - 4096)
        assert pf.hexdigest() == hashlib.sha256(data).hexdigest()
    finally:
        pf.close()
    assert (tmp_path / "p").read_bytes() == data  # released, not lost


def test_publish(tmp_path: Path) -> None:
    final = tmp_path / "a.mp4"
    part = partial_path(final)
    assert part.name == "a.mp4.part"
    part.write_bytes(b"data")
    publish(part, final)
    assert final.read_bytes() == b"data"
    assert not part.exists()


def test_tune_allocator_is_safe_to_call_twice() -> None:
    assert tune_allocator() == tune_allocator()


def test_startup_objects_leave_the_collectors_reach() -> None:
    survivor = [object()]  # a container alive "at start-up"
    try:
        freeze_startup_objects()
        assert gc.get_freeze_count() > 0
        assert not any(obj is survivor for obj in gc.get_objects())  # no longer traversed
    finally:
        gc.unfreeze()
