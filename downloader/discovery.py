"""Enumerate finished video_separates in a time window and queue one fetch_manifest job each.

Shared by ``recall-dl backfill`` and the service's periodic sweep. The ``video_separate``
list (cursor pagination, ``status_code=done``, ``created_at_after/before``) is followed to
the end; with ``cursor_name`` the ``next`` URL is stored after every page is queued, so an
interrupted run resumes where it stopped (at most the page in flight is listed again) and a
finished run leaves an empty cursor, meaning "start from the beginning next time".

Bot ids (needed for the on-disk layout ``<out>/<bot_id>/<recording_id>/``): a video_separate
names only its recording. Per recall-api.md §2 only *Retrieve Recording* carries
``bot: {id, metadata}`` (list items do not, and neither do the simulator's), so:

* with a ``metadata`` filter the bots list (``metadata__KEY=VALUE``) is read once: each bot
  carries its recordings with ``expires_at``, which gives the whole map in few list calls;
* otherwise each new recording is retrieved once (retrieve class, 300/min, concurrently under
  the shared rate limiter); a recording whose fetch_manifest job already exists is not
  retrieved again, so re-running a window costs list calls only.

Priority: soonest ``expires_at`` first (never-expiring last). Backfill priorities are all
negative, so live work (webhooks, ``fetch``: priority 0) goes ahead of the backlog.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import anyio
import structlog

from downloader.errors import JobFailed
from downloader.lifecycle import JobKind, job_id
from downloader.models import MEDIA_DONE, VideoSeparate
from downloader.pipeline.context import PipelineContext
from downloader.store.protocol import NewJob, OnConflict

log = structlog.get_logger(__name__)

# Priorities stay inside a signed 32-bit integer (any store column type): minutes since epoch.
PRIORITY_NEVER = -(2**31) + 1
SECONDS_PER_PRIORITY_STEP = 60

OnBatch = Callable[[Sequence[NewJob], str | None], Awaitable[None]]


@dataclass(frozen=True)
class DiscoveryResult:
    pages: int  # list pages read in this call
    seen: int  # video_separates listed
    new: int  # fetch_manifest jobs newly enqueued


@dataclass(frozen=True)
class Owner:
    """What a recording needs besides its id: the bot it belongs to, and when it expires."""

    bot_id: str
    expires_at: str | None


def parse_time(text: str) -> datetime:
    """ISO 8601 (``Z``, an offset or none = UTC) as an aware datetime; ValueError otherwise."""
    value = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def expiry_priority(expires_at: str | None) -> int:
    """Higher runs first: the sooner a recording expires, the higher; never expiring = lowest."""
    if not expires_at:
        return PRIORITY_NEVER
    try:
        epoch = parse_time(expires_at).timestamp()
    except ValueError:
        return PRIORITY_NEVER
    return max(PRIORITY_NEVER + 1, min(-1, -int(epoch // SECONDS_PER_PRIORITY_STEP)))


def manifest_job(vs: VideoSeparate, recording_id: str, owner: Owner) -> NewJob:
    """The same job ``resolve_recording`` would queue, plus the expiry priority."""
    return NewJob(
        kind=JobKind.FETCH_MANIFEST,
        key=vs.id,
        payload={
            "bot_id": owner.bot_id,
            "recording_id": recording_id,
            "video_separate_id": vs.id,
            "expires_at": owner.expires_at,
        },
        bot_id=owner.bot_id,
        parent=recording_id,
        priority=expiry_priority(owner.expires_at),
    )


async def owners_by_metadata(ctx: PipelineContext, metadata: Mapping[str, str]) -> dict[str, Owner]:
    """recording id -> owner, for every bot whose metadata matches (one bots-list pass)."""
    owners: dict[str, Owner] = {}
    bots = 0
    async for bot in ctx.client.iter_bots(metadata=metadata):
        bots += 1
        for rec in bot.recordings:
            owners[rec.id] = Owner(bot.id, rec.expires_at)
    log.info("discovery_bots_matched", bots=bots, recordings=len(owners))
    return owners


async def _retrieve_owner(ctx: PipelineContext, recording_id: str) -> Owner | None:
    try:
        rec = await ctx.client.get_recording(recording_id)
    except JobFailed as exc:  # deleted meanwhile, or refused: nothing to download
        log.warning("discovery_recording_skipped", recording_id=recording_id, reason=exc.reason)
        return None
    if rec.bot_id is None:
        log.warning("discovery_recording_without_bot", recording_id=recording_id)
        return None
    return Owner(rec.bot_id, rec.expires_at)


async def _existing_job(ctx: PipelineContext, vs: VideoSeparate) -> NewJob | None:
    job = await ctx.store.get(job_id(JobKind.FETCH_MANIFEST, vs.id))
    if job is None or job.bot_id is None or job.parent is None:
        return None
    return NewJob(
        kind=job.kind,
        key=job.key,
        payload=job.payload,
        bot_id=job.bot_id,
        parent=job.parent,
        priority=job.priority,
    )


async def page_jobs(
    ctx: PipelineContext,
    items: Sequence[VideoSeparate],
    owners: Mapping[str, Owner] | None,
    limiter: anyio.CapacityLimiter,
) -> list[NewJob]:
    """One job per usable video_separate of a page, in page order."""
    slots: list[NewJob | None] = [None] * len(items)

    async def resolve(index: int, vs: VideoSeparate, recording_id: str) -> None:
        async with limiter:
            existing = await _existing_job(ctx, vs)
            if existing is not None:
                slots[index] = existing
                return
            owner = await _retrieve_owner(ctx, recording_id)
        if owner is not None:
            slots[index] = manifest_job(vs, recording_id, owner)

    async with anyio.create_task_group() as group:
        for index, vs in enumerate(items):
            if vs.status.code != MEDIA_DONE or vs.recording_id is None:
                continue
            if owners is not None:
                owner = owners.get(vs.recording_id)
                if owner is not None:  # absent: the bot does not match the metadata filter
                    slots[index] = manifest_job(vs, vs.recording_id, owner)
                continue
            group.start_soon(resolve, index, vs, vs.recording_id)
    return [job for job in slots if job is not None]


async def discover(
    ctx: PipelineContext,
    *,
    since: datetime,
    until: datetime | None = None,
    cursor_name: str | None = None,
    metadata: Mapping[str, str] | None = None,
    dry_run: bool = False,
    on_page: Callable[[DiscoveryResult], None] | None = None,
    on_batch: OnBatch | None = None,
) -> DiscoveryResult:
    """List finished video_separates created in [since, until] and queue their manifests.

    ``on_batch(jobs, next_url)`` runs after a page's jobs are enqueued and before its cursor
    is stored (``next_url`` is None on the last page): what it records durably is never
    behind the cursor. ``dry_run`` enqueues nothing and neither reads nor writes the cursor.
    """
    owners = await owners_by_metadata(ctx, metadata) if metadata else None
    stored = await ctx.store.get_cursor(cursor_name) if cursor_name and not dry_run else None
    url = stored or None
    if url is not None:
        log.info("discovery_resumed", cursor=cursor_name)
    limiter = anyio.CapacityLimiter(max(1, ctx.settings.api_concurrency))
    pages = seen = new = 0
    while True:
        items, next_url = await ctx.client.video_separate_page(
            status_code=MEDIA_DONE,
            created_at_after=since,
            created_at_before=until,
            cursor_url=url,
        )
        jobs = await page_jobs(ctx, items, owners, limiter)
        if jobs and not dry_run:
            added = await ctx.store.enqueue(jobs, OnConflict.IGNORE)
            new += added
            if added:
                ctx.wake_workers()
        if on_batch is not None:
            await on_batch(jobs, next_url)
        if cursor_name and not dry_run:
            await ctx.store.set_cursor(cursor_name, next_url or "")
        pages += 1
        seen += len(items)
        result = DiscoveryResult(pages=pages, seen=seen, new=new)
        if on_page is not None:
            on_page(result)
        if next_url is None:
            log.info("discovery_finished", pages=pages, seen=seen, new=new)
            return result
        url = next_url


async def count_in_window(
    ctx: PipelineContext, status_code: str, *, since: datetime, until: datetime | None
) -> int:
    """video_separates of the window in ``status_code``: "processing" ones a later run will
    pick up, "failed" ones Recall could not produce (nothing to download, but worth saying)."""
    count = 0
    async for _ in ctx.client.iter_video_separates(
        status_code=status_code, created_at_after=since, created_at_before=until
    ):
        count += 1
    return count
