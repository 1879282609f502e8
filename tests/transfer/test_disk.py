"""Disk full on a real (tiny) tmpfs, then the same part completes once there is room."""

from __future__ import annotations

import errno
import os
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import structlog

from downloader.errors import DiskFull
from downloader.transfer import partial_path
from tests.transfer.simenv import Checkpoints, assert_clean, fetch, one_part

pytestmark = pytest.mark.anyio

DISK_BYTES = 1 << 20


@pytest.fixture(params=["tmpfs", "dev-full"])
def small_disk(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[Path, Callable[[], None]]]:
    """A 1 MiB tmpfs (needs root; else falls back), and writes past 1 MiB sent to /dev/full
    (a real ENOSPC from the kernel, for hosts where mount is not permitted)."""
    disk = tmp_path / "disk"
    disk.mkdir()
    mounted = None
    if request.param == "tmpfs":
        mounted = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={DISK_BYTES}", "tmpfs", str(disk)],
            capture_output=True,
            check=False,
        )
    if mounted is not None and mounted.returncode == 0:

        def grow() -> None:
            subprocess.run(["mount", "-o", "remount,size=16m", str(disk)], check=True)

        try:
            yield disk, grow
        finally:
            subprocess.run(["umount", "-l", str(disk)], check=False)
        return
    full = os.open("/dev/full", os.O_WRONLY)
    real_pwritev = os.pwritev
    state = {"full": True}

    def pwritev(fd: int, buffers: list[memoryview], offset: int) -> int:
        if state["full"] and offset + sum(len(b) for b in buffers) > DISK_BYTES:
            return real_pwritev(full, buffers, 0)  # raises ENOSPC from the kernel
        return real_pwritev(fd, buffers, offset)

    monkeypatch.setattr(os, "pwritev", pwritev)
    try:
        yield disk, lambda: state.update(full=False)
    finally:
        os.close(full)


async def test_disk_full_keeps_partial_and_completes_later(
    small_disk: tuple[Path, Callable[[], None]],
) -> None:
    disk, grow = small_disk
    async with one_part(part_size=2 << 20) as env:
        cps = Checkpoints()
        path = disk / "out" / "part.mp4"
        with structlog.testing.capture_logs() as logs, pytest.raises(DiskFull) as info:
            await fetch(env, path, cps=cps)
        assert str(disk) in info.value.reason
        full = [e for e in logs if e["event"] == "disk_full"]
        assert full
        assert str(disk) in full[0]["path"]
        assert partial_path(path).exists()  # kept, not failed for good
        assert cps.last is not None
        assert partial_path(path).stat().st_size == cps.last.offset
        grow()
        sha = await fetch(env, path, checkpoint=cps.last, cps=cps)
        assert_clean(env, path, sha)


def test_enospc_errno_is_what_dev_full_gives() -> None:
    fd = os.open("/dev/full", os.O_WRONLY)
    try:
        with pytest.raises(OSError, match="No space left") as info:
            os.write(fd, b"x")
        assert info.value.errno == errno.ENOSPC
    finally:
        os.close(fd)
