"""Engine properties: bounded memory, cancellation keeps progress, session shape, limits."""

from __future__ import annotations

import tracemalloc
from pathlib import Path
from typing import Any

import aiohttp
import anyio
import anyio.lowlevel
import pytest

from downloader.transfer import (
    TransferLimits,
    TransferSettings,
    download_part,
    open_media_session,
    partial_path,
)
from downloader.transfer.partfile import PartFile
from downloader.transfer.plan import Checkpoint
from tests.transfer.simenv import (
    Checkpoints,
    assert_clean,
    fetch,
    final_path,
    one_part,
    wait_served,
)

pytestmark = pytest.mark.anyio

BUFFERS = TransferSettings(chunk_bytes=256 << 10, write_buffer_bytes=256 << 10)


async def peak_traced(tmp_path: Path, size: int) -> int:
    async with one_part(part_size=size) as env:
        path = final_path(tmp_path, f"{size}.mp4")
        async with open_media_session(BUFFERS) as media:
            tracemalloc.start()
            try:
                result = await download_part(
                    media, env.url, path, settings=BUFFERS, policy=env.policy
                )
                _, peak = tracemalloc.get_traced_memory()
            finally:
                tracemalloc.stop()
        assert_clean(env, path, result.sha256)
        return peak


async def test_memory_does_not_grow_with_file_size(tmp_path: Path) -> None:
    small = await peak_traced(tmp_path, 2 << 20)
    large = await peak_traced(tmp_path, 48 << 20)
    # buffers (aiohttp's 2 x chunk_bytes, one write batch, one chunk) plus the simulator's
    # own allocations in this process; nothing proportional to the 48 MiB body
    assert large < 6 << 20, large
    assert large < small + (2 << 20), (small, large)


async def test_cancellation_checkpoints_what_arrived(tmp_path: Path) -> None:
    async with one_part(part_size=4 << 20, throttle=8 << 20) as env:
        cps = Checkpoints()
        path = final_path(tmp_path)
        settings = TransferSettings(write_buffer_bytes=256 << 10, checkpoint_bytes=64 << 20)
        async with anyio.create_task_group() as tg:
            tg.start_soon(lambda: fetch(env, path, cps=cps, settings=settings))
            await wait_served(env, 1 << 20)
            tg.cancel_scope.cancel()
        saved = cps.last
        assert saved is not None
        assert saved.offset >= 768 << 10  # salvaged although no checkpoint was due yet
        assert partial_path(path).stat().st_size == saved.offset
        sha = await fetch(env, path, checkpoint=saved, cps=cps, settings=settings)
        assert_clean(env, path, sha)


@pytest.mark.parametrize("cancel_at", ["checkpoint", "write"])
async def test_cancelled_mid_checkpoint_or_write_never_writes_bytes_twice(
    tmp_path: Path, cancel_at: str
) -> None:
    """Cancellation landing while a checkpoint is recorded (the store call) or while a write
    runs in its thread: the resumed file is still byte-identical (a shutdown once wrote the
    batch being checkpointed a second time, 64 KiB further on)."""
    # Write batches larger than the checkpoint interval: a checkpoint then falls inside a
    # batch that already holds several chunks.
    settings = TransferSettings(
        chunk_bytes=16 << 10, write_buffer_bytes=1 << 20, checkpoint_bytes=100_000
    )
    async with one_part(part_size=2 << 20, throttle=16 << 20) as env:  # paced: small chunks
        path = final_path(tmp_path)
        seen = Checkpoints()
        scope = anyio.CancelScope()

        async def on_checkpoint(checkpoint: Checkpoint) -> None:
            await seen(checkpoint)
            if len(seen.seen) == 3:
                scope.cancel()
                await anyio.lowlevel.checkpoint()  # the store call is where the cancellation lands

        if cancel_at == "write":
            real_write = PartFile.write
            calls = {"n": 0}

            def write_then_cancel(self: PartFile, *args: Any, **kwargs: Any) -> None:
                real_write(self, *args, **kwargs)
                calls["n"] += 1
                if calls["n"] == 5:
                    scope.cancel()  # observed once the thread returns

            patched = pytest.MonkeyPatch()
            patched.setattr(PartFile, "write", write_then_cancel)
        with scope:
            await fetch(env, path, cps=on_checkpoint, settings=settings)
        if cancel_at == "write":
            patched.undo()
        assert scope.cancelled_caught
        saved = seen.last
        assert saved is not None
        sha = await fetch(env, path, checkpoint=saved, settings=settings)
        assert_clean(env, path, sha)


async def test_media_session_shape() -> None:
    settings = TransferSettings(connect_timeout=3.0, read_timeout=7.0, chunk_bytes=1 << 20)
    async with open_media_session(settings, limit=5, limit_per_host=2) as media:
        assert media.timeout.total is None
        assert media.timeout.sock_connect == 3.0
        assert media.timeout.sock_read == 7.0
        assert media.headers["Accept-Encoding"] == "identity"
        assert "Authorization" not in media.headers
        assert media.auto_decompress is False
        assert media.trust_env is False
        assert isinstance(media.cookie_jar, aiohttp.DummyCookieJar)
        assert isinstance(media.connector, aiohttp.TCPConnector)
        assert media.connector.limit == 5
        assert media.connector.limit_per_host == 2


async def test_url_refused_before_opening_anything(tmp_path: Path) -> None:
    from downloader.errors import UnsafeUrl
    from downloader.urlpolicy import UrlPolicy

    async with open_media_session() as media:
        with pytest.raises(UnsafeUrl, match="only https"):
            await download_part(
                media,
                "http://example.com/x.mp4",
                tmp_path / "x.mp4",
                policy=UrlPolicy.for_api("https://us-east-1.recall.ai"),
            )
    assert not (tmp_path / "x.mp4.part").exists()


async def test_limits_bound_global_host_and_recording() -> None:
    limits = TransferLimits(global_limit=4, per_host=3, per_recording=2)
    release = anyio.Event()
    active: dict[str, int] = {}
    peaks: dict[str, int] = {}

    def bump(key: str, delta: int) -> None:
        active[key] = active.get(key, 0) + delta
        peaks[key] = max(peaks.get(key, 0), active[key])

    async def part(host: str, recording: str) -> None:
        async with limits.slot(host, recording):
            for key in ("all", host, recording):
                bump(key, 1)
            await release.wait()
            for key in ("all", host, recording):
                bump(key, -1)

    async with anyio.create_task_group() as tg:
        for i in range(12):
            tg.start_soon(part, f"h{i % 2}", f"r{i % 3}")
        await anyio.wait_all_tasks_blocked()
        assert limits.in_flight == 4  # the global bound is reached, not exceeded
        release.set()
    assert peaks["all"] == 4
    assert max(peaks["h0"], peaks["h1"]) <= 3
    assert max(peaks["r0"], peaks["r1"], peaks["r2"]) <= 2
    assert limits.in_flight == 0
    assert not limits._recordings.limiters  # per-key limiters are dropped when idle


async def test_a_part_cancelled_while_waiting_for_a_slot_leaves_nothing_held() -> None:
    limits = TransferLimits(global_limit=1, per_host=1, per_recording=1)
    release = anyio.Event()

    async def holder() -> None:
        async with limits.slot("H", "r1"):
            await release.wait()

    async def waiter() -> None:
        async with limits.slot("h", "r2"):  # same host, other case: one key
            raise AssertionError("a cancelled waiter must not get the slot")

    async with anyio.create_task_group() as tg:
        tg.start_soon(holder)
        await anyio.wait_all_tasks_blocked()
        async with anyio.create_task_group() as waiting:
            waiting.start_soon(waiter)
            await anyio.wait_all_tasks_blocked()
            assert limits._hosts.limiters["h"][1] == 2  # both counted on the host's limiter
            waiting.cancel_scope.cancel()
        assert limits._hosts.limiters["h"][1] == 1 and "r2" not in limits._recordings.limiters
        release.set()
    assert limits.in_flight == 0
    assert not limits._hosts.limiters and not limits._recordings.limiters


def test_limits_and_settings_validate() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        TransferLimits(global_limit=0)
    with pytest.raises(ValueError, match="positive"):
        TransferSettings(checkpoint_bytes=0)
    with pytest.raises(ValueError, match="timeouts"):
        TransferSettings(read_timeout=0)
