"""download_part: one MP4 part to disk, refreshing its URL when it expires."""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import anyio
import structlog
from yarl import URL

from downloader import naming
from downloader.errors import JobFailed, RefreshUrl, RetryLater
from downloader.lifecycle import JobKind, JobState
from downloader.mp4check import check_mp4_path
from downloader.pipeline.context import PipelineContext
from downloader.pipeline.leases import with_heartbeat
from downloader.pipeline.manifests import finalize_job, read_parts
from downloader.pipeline.outcome import Finish, Outcome
from downloader.store.protocol import Lease, OnConflict
from downloader.transfer import Checkpoint, TransferResult
from downloader.transfer import download_part as transfer_part

log = structlog.get_logger(__name__)

MAX_REFRESHES_PER_RUN = 3
HASH_BLOCK = 1 << 20


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while block := handle.read(HASH_BLOCK):
            digest.update(block)
    return digest.hexdigest()


def _adopt_completed_file(final: Path, progress: dict[str, Any]) -> TransferResult | None:
    """A crash between the rename and the database commit leaves a complete final file.

    It was length-checked before the rename; we accept it again only if its length still
    equals the total the server announced and it is a well-formed MP4.
    """
    total = progress.get("total")
    if not isinstance(total, int) or not final.is_file() or final.stat().st_size != total:
        return None
    if not check_mp4_path(final).ok:
        return None
    return TransferResult(
        path=final, bytes=total, sha256=_sha256_file(final), etag=progress.get("etag")
    )


async def download_part(ctx: PipelineContext, lease: Lease) -> Outcome:
    job = lease.job
    payload: dict[str, Any] = dict(job.payload)
    progress: dict[str, Any] = dict(job.progress)
    bot_id, recording_id = str(payload["bot_id"]), str(payload["recording_id"])
    # The path is pinned at the first attempt: a later manifest may rename the participant.
    relpath = str(progress.get("path") or payload["path"])
    progress["path"] = relpath
    final = naming.ensure_inside(
        ctx.out, naming.recording_dir(ctx.out, bot_id, recording_id) / relpath
    )

    adopted = await anyio.to_thread.run_sync(_adopt_completed_file, final, progress)
    if adopted is not None:
        log.info("part_adopted", part_id=job.key, bytes=adopted.bytes)
        return _finished(ctx, lease, adopted, relpath)

    if ctx.clock() - float(payload.get("url_fetched_at", 0)) > ctx.settings.url_max_age_seconds:
        payload = await _refresh(ctx, job.key, payload)

    state: dict[str, Any] = {
        "checkpoint": Checkpoint.from_json(progress) if "offset" in progress else None
    }

    async def on_checkpoint(checkpoint: Checkpoint) -> None:
        state["checkpoint"] = checkpoint
        await ctx.store.checkpoint(lease, {**checkpoint.to_json(), "path": relpath})

    resumed_from = state["checkpoint"].offset if state["checkpoint"] is not None else 0
    result = await with_heartbeat(
        ctx.store,
        lease,
        ctx.settings.lease_seconds,
        lambda: _transfer_with_refresh(
            ctx, job.key, payload=payload, final=final, state=state, on_checkpoint=on_checkpoint
        ),
    )
    # what this process fetched: a part resumed from an earlier attempt's checkpoint (maybe
    # another process's) counts only the rest
    ctx.count("bytes_downloaded", max(0, result.bytes - resumed_from))
    return _finished(ctx, lease, result, relpath)


async def _transfer_with_refresh(
    ctx: PipelineContext,
    part_id: str,
    *,
    payload: dict[str, Any],
    final: Path,
    state: dict[str, Any],
    on_checkpoint: Callable[[Checkpoint], Awaitable[None]],
) -> TransferResult:
    recording_id = str(payload["recording_id"])
    for _ in range(MAX_REFRESHES_PER_RUN + 1):
        url = str(payload["url"])
        host = URL(url).host or ""
        async with ctx.limits.slot(host, recording_id):
            try:
                return await transfer_part(
                    ctx.media,
                    url,
                    final,
                    checkpoint=state["checkpoint"],
                    on_checkpoint=on_checkpoint,
                    settings=ctx.transfer,
                    policy=ctx.policy,
                )
            except RefreshUrl:
                log.info("part_url_expired", part_id=part_id)
                ctx.count("url_refreshes")
        payload = await _refresh(ctx, part_id, payload)
    raise RetryLater(f"part {part_id}: URL still expired after {MAX_REFRESHES_PER_RUN} refreshes")


async def _refresh(ctx: PipelineContext, part_id: str, payload: dict[str, Any]) -> dict[str, Any]:
    parts = await read_parts(
        ctx,
        bot_id=str(payload["bot_id"]),
        recording_id=str(payload["recording_id"]),
        video_separate_id=str(payload["video_separate_id"]),
    )
    for part in parts:
        if part.id == part_id:
            return {**payload, "url": part.download_url, "url_fetched_at": ctx.clock()}
    raise JobFailed(
        f"part {part_id} is no longer listed in the manifest of "
        f"video_separate {payload['video_separate_id']}"
    )


def _finished(ctx: PipelineContext, lease: Lease, result: TransferResult, relpath: str) -> Finish:
    payload = lease.job.payload

    async def finalize_when_complete() -> None:
        recording_id = str(payload["recording_id"])
        siblings = await ctx.store.list_jobs(kind=JobKind.DOWNLOAD_PART, parent=recording_id)
        if siblings and all(s.state is JobState.DONE for s in siblings):
            job = finalize_job(
                str(payload["bot_id"]), recording_id, str(payload["video_separate_id"])
            )
            if await ctx.store.enqueue([job], OnConflict.REARM):
                ctx.wake_workers()

    return Finish(
        {
            "bytes": result.bytes,
            "sha256": result.sha256,
            "etag": result.etag,
            "path": relpath,
            "host": ctx.worker,
        },
        then=finalize_when_complete,
    )
