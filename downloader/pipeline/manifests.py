"""fetch_manifest: read a video_separate's parts manifest and upsert one job per part.

The same code refreshes expired URLs: re-reading the manifest mints fresh pre-signed URLs,
and parts are matched by their own ``id`` (never by URL), so re-reading updates URLs and
never duplicates a part.
"""

from __future__ import annotations

from typing import Any

import structlog

from downloader import naming
from downloader.errors import JobFailed
from downloader.lifecycle import JobKind
from downloader.models import MEDIA_DONE, Part
from downloader.pipeline.context import PipelineContext
from downloader.pipeline.outcome import Finish, Outcome
from downloader.store.protocol import Lease, NewJob, OnConflict

log = structlog.get_logger(__name__)


def part_payload(
    part: Part, *, bot_id: str, recording_id: str, video_separate_id: str, fetched_at: float
) -> dict[str, Any]:
    relpath = naming.part_relative_path(
        part.participant.id, part.participant.name, part.start_relative, part.type, part.id
    )
    return {
        "bot_id": bot_id,
        "recording_id": recording_id,
        "video_separate_id": video_separate_id,
        "url": part.download_url,
        "url_fetched_at": fetched_at,
        "path": str(relpath),
        "participant": part.participant.to_json(),
        "type": part.type,
        "start_timestamp": part.start_timestamp_json(),
        "duration": part.duration,
    }


def part_jobs(
    parts: list[Part],
    *,
    bot_id: str,
    recording_id: str,
    video_separate_id: str,
    fetched_at: float,
    priority: int = 0,
) -> list[NewJob]:
    return [
        NewJob(
            kind=JobKind.DOWNLOAD_PART,
            key=part.id,
            payload=part_payload(
                part,
                bot_id=bot_id,
                recording_id=recording_id,
                video_separate_id=video_separate_id,
                fetched_at=fetched_at,
            ),
            bot_id=bot_id,
            parent=recording_id,
            priority=priority,  # a backfill's soonest-expiring-first order reaches the parts
        )
        for part in parts
    ]


# The last part to finish wakes its recording's finalize job at once; this delay only matters
# when that wake-up was lost (a crash between the part's commit and the wake-up).
FINALIZE_SAFETY_NET_SECONDS = 600.0


def finalize_job(
    bot_id: str, recording_id: str, video_separate_id: str, run_after: float = 0.0
) -> NewJob:
    return NewJob(
        kind=JobKind.FINALIZE_RECORDING,
        key=recording_id,
        payload={
            "bot_id": bot_id,
            "recording_id": recording_id,
            "video_separate_id": video_separate_id,
        },
        bot_id=bot_id,
        parent=recording_id,
        run_after=run_after,
    )


async def read_parts(
    ctx: PipelineContext,
    *,
    bot_id: str,
    recording_id: str,
    video_separate_id: str,
    priority: int = 0,
) -> list[Part]:
    """Re-read video_separate (fresh manifest link) and the manifest; upsert every part."""
    vs = await ctx.client.get_video_separate(video_separate_id)
    if vs.status.code != MEDIA_DONE or not vs.download_url:
        raise JobFailed(
            f"video_separate {video_separate_id} is {vs.status.code} and has no manifest"
        )
    parts = await ctx.client.fetch_manifest(vs.download_url)
    jobs = part_jobs(
        parts,
        bot_id=bot_id,
        recording_id=recording_id,
        video_separate_id=video_separate_id,
        fetched_at=ctx.clock(),
        priority=priority,
    )
    if jobs:
        await ctx.store.enqueue(jobs, OnConflict.UPDATE_PAYLOAD)
    return parts


async def fetch_manifest(ctx: PipelineContext, lease: Lease) -> Outcome:
    payload = lease.job.payload
    bot_id, recording_id = str(payload["bot_id"]), str(payload["recording_id"])
    video_separate_id = lease.job.key
    parts = await read_parts(
        ctx,
        bot_id=bot_id,
        recording_id=recording_id,
        video_separate_id=video_separate_id,
        priority=lease.job.priority,
    )
    # Queued now, so that it exists whatever happens to the process later. With no parts
    # (nobody had video on) the recording is complete with an empty sidecar at once.
    run_after = ctx.clock() + FINALIZE_SAFETY_NET_SECONDS if parts else 0.0
    await ctx.store.enqueue([finalize_job(bot_id, recording_id, video_separate_id, run_after)])
    ctx.wake_workers()
    log.info("manifest_read", recording_id=recording_id, parts=len(parts))
    return Finish({"parts": len(parts)})
