"""resolve_recording: find the recording's video_separate and wait until it is done."""

from __future__ import annotations

import structlog

from downloader import lifecycle
from downloader.errors import JobFailed
from downloader.lifecycle import JobKind
from downloader.models import MEDIA_DELETED, MEDIA_DONE, MEDIA_FAILED, VideoSeparate
from downloader.pipeline.context import PipelineContext
from downloader.pipeline.outcome import Finish, Outcome, Wait
from downloader.store.protocol import Lease, NewJob, OnConflict

log = structlog.get_logger(__name__)

NOT_ENABLED_HINT = (
    "no video_separate appeared for recording {recording_id} within {grace:.0f} s after it "
    "finished; the bot was probably not created with recording_config.video_separate_mp4 "
    "and video_mixed_layout 'gallery_view_v2'"
)


def manifest_job(bot_id: str, recording_id: str, video_separate: VideoSeparate) -> NewJob:
    return NewJob(
        kind=JobKind.FETCH_MANIFEST,
        key=video_separate.id,
        payload={
            "bot_id": bot_id,
            "recording_id": recording_id,
            "video_separate_id": video_separate.id,
        },
        bot_id=bot_id,
        parent=recording_id,
    )


async def resolve_recording(ctx: PipelineContext, lease: Lease) -> Outcome:
    payload = dict(lease.job.payload)
    recording_id = lease.job.key
    bot_id = str(payload["bot_id"])
    found = [vs async for vs in ctx.client.iter_video_separates(recording_id=recording_id)]
    polls = int(payload.get("polls", 0))
    payload["polls"] = polls + 1
    delay = lifecycle.poll_delay(
        polls, initial=ctx.settings.poll_initial_seconds, maximum=ctx.settings.poll_max_seconds
    )
    if not found:
        return await _no_video_separate_yet(ctx, recording_id, payload, delay)
    for vs in found:
        if vs.status.code in (MEDIA_FAILED, MEDIA_DELETED):
            sub = f" ({vs.status.sub_code})" if vs.status.sub_code else ""
            raise JobFailed(
                f"video_separate {vs.id} of recording {recording_id} is {vs.status.code}{sub}"
            )
    waiting = [vs for vs in found if vs.status.code != MEDIA_DONE]
    if waiting:
        return Wait(delay, payload, reason=f"video_separate is {waiting[0].status.code}")
    await ctx.store.enqueue(
        [manifest_job(bot_id, recording_id, vs) for vs in found], OnConflict.IGNORE
    )
    ctx.wake_workers()
    return Finish({"video_separate_ids": [vs.id for vs in found]})


async def _no_video_separate_yet(
    ctx: PipelineContext, recording_id: str, payload: dict[str, object], delay: float
) -> Outcome:
    """Recall creates video_separate while the recording processes; allow a grace period."""
    recording = await ctx.client.get_recording(recording_id)
    code = recording.status.code if recording.status else "unknown"
    if code in (MEDIA_FAILED, MEDIA_DELETED):
        sub = (
            f" ({recording.status.sub_code})"
            if recording.status and recording.status.sub_code
            else ""
        )
        raise JobFailed(f"recording {recording_id} is {code}{sub}")
    if code != MEDIA_DONE:
        return Wait(delay, payload, reason=f"recording is {code}")
    now = ctx.clock()
    first_seen = float(payload.setdefault("done_without_media_since", now))  # type: ignore[arg-type]
    grace = ctx.settings.video_separate_grace_seconds
    if now - first_seen >= grace:
        raise JobFailed(NOT_ENABLED_HINT.format(recording_id=recording_id, grace=grace))
    return Wait(
        min(delay, max(1.0, grace - (now - first_seen))), payload, reason="no video_separate yet"
    )
