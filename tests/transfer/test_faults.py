"""One transfer against the simulator over real sockets, one test per fault-matrix row."""

from __future__ import annotations

import errno
import fcntl
import os
import random
import stat
from pathlib import Path

import aiohttp
import pytest
import structlog

from downloader.errors import (
    ConfigError,
    DiscardPartial,
    IncompleteBody,
    JobFailed,
    NetworkError,
    RedirectRefused,
    RefreshUrl,
    RemoteRejected,
    RetryLater,
    ServerBusy,
    UnsafeUrl,
)
from downloader.transfer import (
    Checkpoint,
    TransferSettings,
    download_part,
    partial_path,
)
from tests.transfer.simenv import (
    SMALL,
    Checkpoints,
    assert_clean,
    faults,
    fetch,
    final_path,
    one_part,
)

pytestmark = pytest.mark.anyio


async def test_clean_download_checkpoints_and_publishes(tmp_path: Path) -> None:
    async with one_part(part_size=3 << 20) as env:
        cps = Checkpoints()
        path = final_path(tmp_path)
        sha = await fetch(env, path, cps=cps)
        assert_clean(env, path, sha)
        assert env.served() == 3 << 20
        offsets = [cp.offset for cp in cps.seen]
        assert offsets == sorted(offsets)
        assert offsets[-1] == 3 << 20
        gaps = [b - a for a, b in zip([0, *offsets], offsets, strict=False)]
        assert max(gaps) <= SMALL.checkpoint_bytes
        assert {cp.total for cp in cps.seen} == {3 << 20}


@pytest.mark.parametrize("seed", [1, 2, 3])
async def test_truncation_resumes_from_checkpoint(tmp_path: Path, seed: int) -> None:
    size = 2 << 20 if seed < 3 else 1 << 20
    async with one_part(part_size=size + random.Random(seed).randrange(1 << 16)) as env:
        total = len(env.content())
        env.sim.set_faults(faults(truncate=1))
        cps = Checkpoints()
        path = final_path(tmp_path)
        with pytest.raises(IncompleteBody):
            await fetch(env, path, cps=cps)
        assert cps.last is not None
        assert 0 < cps.last.offset < total
        assert partial_path(path).stat().st_size >= cps.last.offset
        sha = await fetch(env, path, checkpoint=cps.last, cps=cps)
        assert_clean(env, path, sha)
        assert env.media_stats()["range_requests"] == 1
        # what the client had read before the cut was kept (aiohttp drops what it still
        # buffered when the connection breaks): at most one checkpoint interval twice
        assert env.served() - total <= SMALL.checkpoint_bytes


async def test_stall_is_a_retryable_timeout(tmp_path: Path) -> None:
    settings = TransferSettings(
        chunk_bytes=64 << 10,
        write_buffer_bytes=64 << 10,
        checkpoint_bytes=256 << 10,
        read_timeout=0.5,
    )
    async with one_part(part_size=1 << 20, faults=faults(stall=1, stall_seconds=30)) as env:
        cps = Checkpoints()
        path = final_path(tmp_path)
        with pytest.raises(NetworkError, match="stalled"):
            await fetch(env, path, cps=cps, settings=settings)
        assert cps.last is not None
        sha = await fetch(env, path, checkpoint=cps.last, settings=settings)
        assert_clean(env, path, sha)


async def test_range_ignored_restarts_from_zero(tmp_path: Path) -> None:
    async with one_part(part_size=1 << 20, faults=faults(truncate=1)) as env:
        cps = Checkpoints()
        path = final_path(tmp_path)
        with pytest.raises(IncompleteBody):
            await fetch(env, path, cps=cps)
        resume_at = cps.last
        assert resume_at is not None
        assert resume_at.offset > 0
        env.sim.set_faults(faults(ignore_range=1))
        sha = await fetch(env, path, checkpoint=resume_at, cps=cps)
        assert_clean(env, path, sha)
        after = cps.seen[cps.seen.index(resume_at) + 1 :]
        assert after[0].offset == 0  # the stale checkpoint was replaced before writing
        assert env.media_stats()["full_requests"] == 2


async def test_etag_change_restarts_with_the_new_object(tmp_path: Path) -> None:
    async with one_part(part_size=1 << 20, faults=faults(truncate=1)) as env:
        cps = Checkpoints()
        path = final_path(tmp_path)
        with pytest.raises(IncompleteBody):
            await fetch(env, path, cps=cps)
        old = cps.last
        assert old is not None
        old_sha = env.sha256()
        env.sim.set_faults(faults(etag_change=1))
        sha = await fetch(env, path, checkpoint=old, cps=cps)
        assert sha != old_sha
        assert_clean(env, path, sha)
        assert cps.last is not None
        assert cps.last.etag != old.etag


async def test_416_verifies_the_file_on_disk(tmp_path: Path) -> None:
    async with one_part(part_size=1 << 20) as env:
        cps = Checkpoints()
        path = final_path(tmp_path)
        sha = await fetch(env, path, cps=cps)
        done = cps.last
        assert done is not None
        assert done.offset == done.total
        path.rename(partial_path(path))  # a crash after the last checkpoint, before rename
        served = env.served()
        again = await fetch(env, path, checkpoint=done)
        assert again == sha
        assert_clean(env, path, again)
        assert env.served() == served  # verified locally, no body re-sent


async def test_expired_url_refresh_continues_from_checkpoint(tmp_path: Path) -> None:
    async with one_part(part_size=2 << 20, faults=faults(truncate=1)) as env:
        cps = Checkpoints()
        path = final_path(tmp_path)
        with pytest.raises(IncompleteBody):
            await fetch(env, path, cps=cps)
        saved = cps.last
        assert saved is not None
        env.sim.advance_time(7 * 3600)  # past the 6 h lifetime of the pre-signed URL
        with pytest.raises(RefreshUrl, match="Request has expired"):
            await fetch(env, path, checkpoint=saved, cps=cps)
        assert cps.last == saved  # nothing changed on disk or in the store
        assert partial_path(path).exists()
        fresh = env.fresh_url()
        assert fresh != env.url
        sha = await fetch(env, path, checkpoint=saved, cps=cps, url=fresh)
        assert_clean(env, path, sha)
        media = [e for e in env.sim.request_log() if e["host"] == "media"]
        assert [e["status"] for e in media] == [200, 403, 206]
        assert media[-1]["range"] == f"bytes={saved.offset}-"
        assert env.served() - len(env.content()) <= SMALL.checkpoint_bytes


async def test_expired_fault_is_a_refresh(tmp_path: Path) -> None:
    async with one_part(faults=faults(expire=1)) as env:
        path = final_path(tmp_path)
        with pytest.raises(RefreshUrl):
            await fetch(env, path)
        sha = await fetch(env, path, url=env.fresh_url())
        assert_clean(env, path, sha)


async def test_media_5xx_is_retryable(tmp_path: Path) -> None:
    async with one_part(faults=faults(media_5xx=1)) as env:
        path = final_path(tmp_path)
        with pytest.raises(ServerBusy, match="SlowDown"):
            await fetch(env, path)
        sha = await fetch(env, path)
        assert_clean(env, path, sha)


async def test_other_403_fails_with_the_servers_reason(tmp_path: Path) -> None:
    async with one_part() as env:
        tampered = env.url.replace("X-Amz-Signature=", "X-Amz-Signature=00")
        with pytest.raises(RemoteRejected, match="HTTP 403 AccessDenied: Access Denied"):
            await fetch(env, final_path(tmp_path), url=tampered)


async def test_redirect_to_another_host_is_refused(tmp_path: Path) -> None:
    async with one_part(faults=faults(redirect=1)) as env:
        path = final_path(tmp_path)
        with pytest.raises(RedirectRefused, match="cross-host redirect"):
            await fetch(env, path)
        assert env.violations()["redirect_followed"] == 0
        assert not path.exists()


async def test_authorization_never_reaches_the_media_host(tmp_path: Path) -> None:
    async with one_part() as env:
        path = final_path(tmp_path)
        async with aiohttp.ClientSession(headers={"Authorization": "Token sim-key"}) as api:
            with pytest.raises(ConfigError):
                await download_part(api, env.url, path, policy=env.policy, settings=SMALL)
        sha = await fetch(env, path)
        assert_clean(env, path, sha)
        assert env.media_stats()["full_requests"] == 1  # only the media session's request


async def test_unsafe_urls_are_refused_before_any_io(tmp_path: Path) -> None:
    async with one_part() as env:
        for url in (
            "https://evil.example.com/x.mp4",
            "ftp://127.0.0.1/x.mp4",
            env.url.replace("http://", "https://user:pw@"),
        ):
            with pytest.raises(UnsafeUrl):
                await fetch(env, final_path(tmp_path), url=url)
        assert not (tmp_path / "out").exists()
        assert env.media_stats()["full_requests"] == 0


@pytest.mark.parametrize("resuming", [False, True], ids=["fresh", "resuming"])
async def test_symlink_at_partial_path_is_not_followed(tmp_path: Path, resuming: bool) -> None:
    """The partial file is opened before the request, fresh or resuming: the link is
    refused, never followed, and nothing is asked of the server."""
    async with one_part() as env:
        path = final_path(tmp_path)
        path.parent.mkdir(parents=True)
        victim = tmp_path / "victim"
        victim.write_bytes(b"precious")
        partial_path(path).symlink_to(victim)
        checkpoint = Checkpoint(1000, None, None) if resuming else None
        with pytest.raises(JobFailed, match="symlink"):
            await fetch(env, path, checkpoint=checkpoint)
        assert victim.read_bytes() == b"precious"
        assert partial_path(path).is_symlink() and not path.exists()
        assert env.media_stats()["full_requests"] == 0
        assert env.media_stats()["range_requests"] == 0


@pytest.mark.parametrize("resuming", [False, True], ids=["fresh", "resuming"])
async def test_a_partial_file_held_by_another_writer_is_left_alone(
    tmp_path: Path, resuming: bool
) -> None:
    async with one_part() as env:
        path = final_path(tmp_path)
        path.parent.mkdir(parents=True)
        partial_path(path).write_bytes(b"other writer")
        # Another process (here another open file description) holds the partial file.
        with partial_path(path).open("r+b") as other:
            fcntl.flock(other.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            checkpoint = Checkpoint(5, None, None) if resuming else None
            with pytest.raises(RetryLater, match="another process is still writing"):
                await fetch(env, path, checkpoint=checkpoint)
            assert partial_path(path).read_bytes() == b"other writer"
            # the lock is taken before asking: a frozen holder's successor does not
            # download the part at the same time
            assert env.media_stats()["full_requests"] == 0
            assert env.media_stats()["range_requests"] == 0
        sha = await fetch(env, path)  # the lock went with the other writer
        assert_clean(env, path, sha)


async def test_fsync_failure_discards_the_partial_and_starts_over(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_fsync = os.fsync
    calls = {"n": 0}

    def fsync_fails_once(fd: int) -> None:
        calls["n"] += 1
        if calls["n"] == 2:
            raise OSError(errno.EIO, "Input/output error")
        real_fsync(fd)

    async with one_part(part_size=2 << 20) as env:
        cps = Checkpoints()
        path = final_path(tmp_path)
        monkeypatch.setattr(os, "fsync", fsync_fails_once)
        with structlog.testing.capture_logs() as logs, pytest.raises(DiscardPartial):
            await fetch(env, path, cps=cps)
        assert any(e["event"] == "fsync_failed" for e in logs)
        assert not partial_path(path).exists()
        served = env.served()
        # the caller drops its checkpoint; an old one must not resurrect the data either way
        sha = await fetch(env, path, checkpoint=cps.last, cps=cps)
        assert_clean(env, path, sha)
        assert env.served() - served == len(env.content())  # downloaded again from zero


async def test_directory_fsync_failure_after_the_rename_discards_the_final_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The rename happened but is not known durable: the part is not complete, and the
    file under the final name must not be mistaken for one."""
    real_fsync = os.fsync

    def directory_fsync_fails(fd: int) -> None:
        if stat.S_ISDIR(os.fstat(fd).st_mode):
            raise OSError(errno.EIO, "Input/output error")
        real_fsync(fd)

    async with one_part(part_size=200_000) as env:
        path = final_path(tmp_path)
        with monkeypatch.context() as patched:
            patched.setattr(os, "fsync", directory_fsync_fails)
            with pytest.raises(DiscardPartial, match="fsync failed"):
                await fetch(env, path)
        assert not path.exists() and not partial_path(path).exists()
        sha = await fetch(env, path)
        assert_clean(env, path, sha)


async def test_a_leftover_partial_file_without_a_checkpoint_is_replaced(tmp_path: Path) -> None:
    """No checkpoint: nothing on disk is trusted; the file is emptied whatever its length
    (here longer than the part)."""
    async with one_part(part_size=200_000) as env:
        path = final_path(tmp_path)
        path.parent.mkdir(parents=True)
        partial_path(path).write_bytes(b"stale" * 100_000)
        sha = await fetch(env, path)
        assert_clean(env, path, sha)
        assert env.media_stats()["range_requests"] == 0
