"""Blocking file operations on ``<final>.part``; every method runs in a worker thread.

One call per write buffer (MiBs): ``pwritev`` at the committed offset, SHA-256 update (hashlib
releases the GIL), and an fsync when a checkpoint is due, after which the now clean pages
are released from the page cache (see ``release_cache``). The partial file is opened with
``O_NOFOLLOW`` and must be a regular file. A transfer opens (and locks) it before its
request; the end of a transfer is one call: ``finish`` (last batch, fsync, MP4 check,
rename, directory fsync, close).
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import fcntl
import hashlib
import os
import stat
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, cast

from downloader.mp4check import Mp4Check, check_mp4_fd

if TYPE_CHECKING:
    from hashlib import _Hash

PARTIAL_SUFFIX = ".part"
_FADV_DONTNEED: int | None = getattr(os, "POSIX_FADV_DONTNEED", None)
SYNC_FILE_RANGE_WRITE = 2
READ_BLOCK = 1 << 20
IOV_MAX = os.sysconf("SC_IOV_MAX") if hasattr(os, "sysconf") else 1024


class FsyncFailed(Exception):
    """Internal marker: an fsync raised; the data written since the last one is suspect."""

    def __init__(self, cause: OSError) -> None:
        super().__init__(str(cause))
        self.cause = cause


def _load_sync_file_range() -> Callable[[int, int, int, int], int] | None:
    """``sync_file_range(2)`` (Linux): start writing a range back without waiting for it."""
    if sys.platform != "linux":
        return None
    try:  # the process's own symbols include libc's (no ``find_library`` subprocess)
        func = ctypes.CDLL(None, use_errno=True).sync_file_range
    except (OSError, AttributeError):
        return None
    func.argtypes = [ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint]
    func.restype = ctypes.c_int
    return cast("Callable[[int, int, int, int], int]", func)


_sync_file_range = _load_sync_file_range()


def start_writeback(fd: int, offset: int, length: int) -> None:
    """Hand freshly written pages to the disk now, so the next fsync finds little to do and
    the page cache does not pile up dirty data (best effort; errors surface at fsync)."""
    if _sync_file_range is not None and length > 0:
        _sync_file_range(fd, offset, length, SYNC_FILE_RANGE_WRITE)


def release_cache(fd: int, offset: int, length: int) -> None:
    """Give the page cache back pages that are already on the disk (best effort).

    Why: the engine never reads what it wrote (beyond a few MP4 box headers), and copying
    received bytes into freshly allocated page-cache pages was the largest single CPU cost
    of a download on the VMs this runs on (~40 % of the process, more than SHA-256). Pages
    released right after their fsync go back to the free list and are the next ones the
    next write gets, still warm; the download also no longer evicts the rest of the host's
    cache. Only pages that an fsync has just made clean are released, so nothing is written
    early and nothing durable depends on this call.
    """
    if _FADV_DONTNEED is not None and length > 0:
        with contextlib.suppress(OSError):
            os.posix_fadvise(fd, offset, length, _FADV_DONTNEED)


def partial_path(final: Path) -> Path:
    return final.with_name(final.name + PARTIAL_SUFFIX)


def _sync(fd: int) -> None:
    try:
        os.fsync(fd)
    except OSError as exc:
        raise FsyncFailed(exc) from exc


class PartFile:
    """An open partial file and the SHA-256 of its first ``hashed`` bytes."""

    def __init__(self, path: Path, fd: int, length: int = 0) -> None:
        self.path = path
        self.fd = fd
        self.hasher: _Hash = hashlib.sha256()
        self.hashed = 0
        self.length = length  # the file's size as of the last open, write or truncate
        self.released = 0  # the page cache was released up to here after an fsync
        self.published = False  # renamed to its final name

    @classmethod
    def open(cls, path: Path, *, make_parents: bool = False) -> PartFile:
        """Open or create without following a symlink; refuse anything but a regular file.

        Called before anything is asked of the server: a resumed transfer needs the length,
        and the file is locked (``flock``) for as long as it is open. A worker whose lease
        was taken over while it was frozen (SIGSTOP, a partition) may still hold the file;
        its successor gets ``EWOULDBLOCK`` and tries again later, so two writers never
        interleave on one partial file, nor download one part at the same time.
        """
        flags = os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC
        try:
            fd = os.open(path, flags, 0o666)
        except FileNotFoundError:
            if not make_parents:
                raise
            path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, flags, 0o666)
        try:
            info = os.fstat(fd)
            if not stat.S_ISREG(info.st_mode):
                raise OSError(errno.EINVAL, "partial path is not a regular file", str(path))
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BaseException:
            os.close(fd)
            raise
        return cls(path, fd, info.st_size)

    @property
    def closed(self) -> bool:
        return self.fd < 0

    def size(self) -> int:
        self.length = os.fstat(self.fd).st_size
        return self.length

    def reset(self, offset: int, rehash: bool = True) -> None:
        """Keep only the first ``offset`` bytes; hash them now (re-reading) or lazily later."""
        os.ftruncate(self.fd, offset)
        self.length = offset
        self.released = min(self.released, offset)
        if offset != self.hashed:
            self.hasher = hashlib.sha256()
            self.hashed = 0
        if rehash:
            self._hash_prefix(offset)

    def drop_hash(self) -> None:
        """Forget the hash state (the next ``reset`` with ``rehash`` rebuilds it)."""
        self.hasher = hashlib.sha256()
        self.hashed = 0

    def _hash_prefix(self, offset: int) -> None:
        buffer = bytearray(min(READ_BLOCK, max(offset, 1)))
        view = memoryview(buffer)
        while self.hashed < offset:
            want = min(len(buffer), offset - self.hashed)
            got = os.preadv(self.fd, [view[:want]], self.hashed)
            if got <= 0:
                raise OSError(errno.EIO, "partial file shorter than expected", str(self.path))
            self.hasher.update(view[:got])
            self.hashed += got

    def write(
        self,
        chunks: Sequence[bytes | memoryview],
        offset: int,
        sync: bool,
        release: bool = True,
    ) -> None:
        """Write ``chunks`` at ``offset`` (which must be the hashed length), then maybe fsync
        (and then release the now clean pages from the page cache, unless told not to)."""
        if offset != self.hashed:
            raise RuntimeError(f"write at {offset} but {self.hashed} bytes hashed")
        pending: list[memoryview] = [memoryview(c) for c in chunks]
        position = offset
        length, self.length = self.length, -1  # unknown until every byte is written
        while pending:
            batch = pending[:IOV_MAX]
            written = os.pwritev(self.fd, batch, position)
            position += written
            while written and pending:
                head = pending[0]
                if written >= len(head):
                    written -= len(head)
                    pending.pop(0)
                else:
                    pending[0] = head[written:]
                    written = 0
        if not sync:  # (an fsync follows at once otherwise: the hint would be one more call)
            start_writeback(self.fd, offset, position - offset)
        for chunk in chunks:
            self.hasher.update(chunk)
        self.hashed = position
        self.length = max(length, position)
        if sync:
            _sync(self.fd)
            if release:
                self._release(position)

    def _release(self, upto: int) -> None:
        release_cache(self.fd, self.released, upto - self.released)
        self.released = max(self.released, upto)

    def finish(
        self,
        chunks: Sequence[bytes | memoryview],
        offset: int,
        verify: bool,
        final: Path | None = None,
    ) -> Mp4Check:
        """The last batch, fsync, the structural check (if asked) and, if it passed and
        ``final`` is given, the rename, directory fsync and close: one thread hop.
        The page cache is released after the check, which reads a few box headers from it."""
        self.write(chunks, offset, sync=True, release=False)
        report = self.check_mp4() if verify else Mp4Check(True, None, ())
        self._release(self.hashed)
        if report.ok and final is not None:
            self.publish(final)
        return report

    def sync(self) -> None:
        _sync(self.fd)

    def check_mp4(self) -> Mp4Check:
        return check_mp4_fd(self.fd, self.hashed)

    def hexdigest(self) -> str:
        return self.hasher.hexdigest()

    def publish(self, final: Path) -> None:
        """Rename to ``final``, make the rename durable, and close (the lock goes with it)."""
        try:
            os.replace(self.path, final)
            self.published = True
            sync_directory(final.parent)
        finally:
            self.close()

    def close(self) -> None:
        if self.fd >= 0:
            fd, self.fd = self.fd, -1
            os.close(fd)


def publish(partial: Path, final: Path) -> None:
    """Rename the verified partial file to its final name and make the rename durable."""
    os.replace(partial, final)
    sync_directory(final.parent)


def sync_directory(directory: Path) -> None:
    """fsync a directory after a rename into it (a failure is ``FsyncFailed``)."""
    dir_fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        _sync(dir_fd)
    finally:
        os.close(dir_fd)


def discard(path: Path) -> None:
    """Remove a file we no longer trust; a missing file is fine."""
    path.unlink(missing_ok=True)
