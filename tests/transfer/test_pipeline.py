"""The write pipeline and the worker pool: bounds that the speed-ups must not loosen."""

from __future__ import annotations

import os
import struct
import threading
import time
from pathlib import Path
from typing import Any

import anyio
import pytest

from downloader.mp4check import check_mp4_fd
from downloader.transfer import TransferSettings, download_part, open_media_session, workers
from downloader.transfer.partfile import PartFile
from downloader.transfer.plan import Checkpoint
from tests.transfer.simenv import Checkpoints, assert_clean, fetch, final_path, one_part

pytestmark = pytest.mark.anyio


async def test_worker_errors_reach_the_caller() -> None:
    def boom() -> None:
        raise OSError(5, "Input/output error")

    with pytest.raises(OSError, match="Input/output"):
        await workers.run_sync(boom)
    assert await workers.run_sync(sum, [1, 2, 3]) == 6


async def test_a_cancelled_caller_waits_for_its_thread() -> None:
    """Not cancellable once submitted (as anyio's default): the file is never touched by a
    thread that outlives the coroutine that started it. A call that gave up on cancellation
    would raise instead of returning the thread's result."""
    finished = threading.Event()

    def slow() -> str:
        finished.set()
        return "done"

    results: list[str] = []
    with anyio.CancelScope() as scope:
        scope.cancel()  # already cancelled when the call is made
        results.append(await workers.run_sync(slow))
        await anyio.lowlevel.checkpoint()  # the cancellation lands here, after the thread
    assert finished.is_set()
    assert results == ["done"]
    assert scope.cancelled_caught


async def test_the_pool_reuses_its_threads() -> None:
    before = threading.active_count()

    async def caller() -> None:
        for _ in range(200):
            await workers.run_sync(time.sleep, 0)

    async with anyio.create_task_group() as tg:
        for _ in range(8):
            tg.start_soon(caller)
    assert threading.active_count() - before <= 8


async def test_bytes_on_disk_never_pass_the_recorded_checkpoint_by_more_than_an_interval(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """While batches are written in the background, every write ends within one interval of
    the checkpoint the store holds at that moment, and every checkpoint was fsynced first."""
    settings = TransferSettings(
        chunk_bytes=64 << 10, write_buffer_bytes=256 << 10, checkpoint_bytes=300_000
    )
    recorded = Checkpoints()
    fsynced: list[int] = []
    violations: list[tuple[int, int]] = []
    real_write = PartFile.write

    def checked_write(
        self: PartFile, chunks: Any, offset: int, sync: bool, release: bool = True
    ) -> None:
        end = offset + sum(len(c) for c in chunks)
        last = recorded.last.offset if recorded.last is not None else 0
        if end - last > settings.checkpoint_bytes:
            violations.append((last, end))
        real_write(self, chunks, offset, sync, release)
        if sync:
            fsynced.append(end)

    async def on_checkpoint(checkpoint: Checkpoint) -> None:
        assert checkpoint.offset in fsynced  # recorded only once its fsync returned
        await recorded(checkpoint)

    monkeypatch.setattr(PartFile, "write", checked_write)
    async with one_part(part_size=3 << 20, throttle=24 << 20) as env:
        path = final_path(tmp_path)
        assert_clean(env, path, await fetch(env, path, cps=on_checkpoint, settings=settings))
    assert not violations
    offsets = [cp.offset for cp in recorded.seen]
    assert offsets[:-1] == [300_000 * i for i in range(1, len(offsets))]  # exact intervals
    assert offsets[-1] == 3 << 20


async def test_a_small_part_takes_two_thread_hops(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Open and lock; then last batch + fsync + check + rename + directory fsync + close."""
    calls: list[str] = []
    real_start = workers.start

    def counting_start(func: Any, *args: Any) -> Any:
        calls.append(getattr(func, "__name__", repr(func)))
        return real_start(func, *args)

    monkeypatch.setattr(workers, "start", counting_start)
    async with one_part(part_size=200_000) as env:
        path = final_path(tmp_path)
        async with open_media_session() as media:
            result = await download_part(
                media, env.url, path, policy=env.policy, on_checkpoint=Checkpoints()
            )
        assert_clean(env, path, result.sha256)
    assert calls == ["partial_file", "finish"]


def test_mp4_check_through_a_descriptor_reads_headers_in_place(tmp_path: Path) -> None:
    ftyp = struct.pack(">I4s4sI", 16, b"ftyp", b"isom", 0)
    mdat = struct.pack(">I4sQ", 1, b"mdat", 16 + 1000) + bytes(1000)  # 64-bit size
    moov = struct.pack(">I4s", 8, b"moov")
    path = tmp_path / "x.mp4"
    path.write_bytes(ftyp + mdat + moov)
    fd = os.open(path, os.O_RDONLY)
    try:
        os.lseek(fd, 5, os.SEEK_SET)
        report = check_mp4_fd(fd, path.stat().st_size)
        assert report.ok, report.problem
        assert report.boxes == ("ftyp", "mdat", "moov")
        assert os.lseek(fd, 0, os.SEEK_CUR) == 5  # the descriptor's offset is untouched
        short = check_mp4_fd(fd, len(ftyp) + len(mdat))  # as if the moov had not arrived
        assert not short.ok
        assert short.problem == "missing required box(es): moov"
    finally:
        os.close(fd)
