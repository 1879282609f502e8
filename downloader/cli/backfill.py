"""`recall-dl backfill --since DATE [--until DATE]`: download every finished separate video
created in a window, soonest-expiring recordings first, then exit.

Resumable: the window's progress lives in the job store (its list cursor, which recordings it
queued, and whether listing finished), so Ctrl-C or a crash followed by the same command lists
at most one page again and fetches no completed part again. A window that finished is listed
afresh by the next run (cheap: known recordings are not retrieved again), which picks up
videos that were still processing at the window's edge.

Exit codes: 0 every recording of the window done; 1 some failed; 2 usage or configuration
error; 3 authentication error; 130 interrupted (run the same command to resume). Videos that
Recall itself failed to produce (status ``failed``: nothing to download) are counted in the
summary, not as failures of the backfill.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import signal
import sys
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import anyio
import structlog
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from downloader.app import open_pipeline, open_store_for, prepare_out_dir
from downloader.cli.common import (
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_USAGE,
    add_common_options,
    settings_from_args,
    state_url,
)
from downloader.config import Settings
from downloader.discovery import (
    DiscoveryResult,
    count_in_window,
    discover,
    parse_time,
)
from downloader.errors import JobFailed, RetryLater
from downloader.lifecycle import ACTIVE_STATES, JobKind, JobState, job_id
from downloader.pipeline import PipelineContext, lease_keeper, run_pools
from downloader.pipeline.finalize import stranded_finalize
from downloader.pipeline.manifests import finalize_job
from downloader.store.protocol import Job, JobStore, NewJob, OnConflict
from downloader.summary import human_bytes

log = structlog.get_logger(__name__)

CHECK_SECONDS = 0.25
CHECK_BUDGET = 32  # unfinished recordings looked at per check; finished ones cost one read each
REFRESH_SECONDS = 0.5
LOG_EVERY_SECONDS = 10.0
FAILURES_SHOWN = 10


# ---------------------------------------------------------------------------- the window


@dataclass(frozen=True)
class Window:
    since: datetime
    until: datetime
    until_given: bool
    metadata: dict[str, str]

    @property
    def key(self) -> str:
        """Names the window's durable state; an open-ended window resumes across runs."""
        canonical = json.dumps(
            {
                "since": self.since.isoformat(),
                "until": self.until.isoformat() if self.until_given else None,
                "metadata": sorted(self.metadata.items()),
            }
        )
        return "backfill:" + hashlib.sha256(canonical.encode()).hexdigest()[:16]

    def describe(self) -> str:
        shown = f"{_iso(self.since)} .. {_iso(self.until)}"
        if self.metadata:
            shown += " " + " ".join(f"{k}={v}" for k, v in sorted(self.metadata.items()))
        return shown


def _iso(value: datetime) -> str:
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def parse_date(text: str, *, end_of_day: bool = False) -> datetime:
    """A calendar date (``YYYY-MM-DD`` or the compact ``YYYYMMDD``: a whole day, from midnight,
    or up to the next midnight for ``--until``) or ISO 8601 with a time (UTC when no zone)."""
    try:
        day = date.fromisoformat(text.strip())
    except ValueError:
        return parse_time(text)
    start = datetime(day.year, day.month, day.day, tzinfo=UTC)
    return start + timedelta(days=1) if end_of_day else start


def parse_window(args: argparse.Namespace, now: datetime) -> Window:
    """Raise ValueError with the one line to show."""
    try:
        since = parse_date(args.since)
    except ValueError:
        raise ValueError(f"--since {args.since!r} is not a date (YYYY-MM-DD or ISO 8601)") from None
    until = now
    if args.until is not None:
        try:
            until = parse_date(args.until, end_of_day=True)
        except ValueError:
            raise ValueError(
                f"--until {args.until!r} is not a date (YYYY-MM-DD or ISO 8601)"
            ) from None
    if since > until:
        if args.until is None:  # the user gave no --until: the end is "now"
            raise ValueError(f"--since {_iso(since)} is in the future (now is {_iso(until)})")
        raise ValueError(f"--since {_iso(since)} is after --until {_iso(until)}")
    metadata: dict[str, str] = {}
    for item in args.metadata or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"--metadata {item!r} must look like KEY=VALUE")
        metadata[key.strip()] = value
    return Window(since, until, args.until is not None, metadata)


# ---------------------------------------------------------------------------- durable state


class WindowState:
    """What a window has done so far, kept in the store's cursors table.

    ``<key>:next`` the list cursor (owned by ``discover``); ``<key>:phase`` listing | listed |
    done; ``<key>:batch:<i>`` the recordings page ``i`` queued; ``<key>:batches`` how many.
    """

    def __init__(self, store: JobStore, key: str) -> None:
        self.store, self.key = store, key
        self.cursor_name = f"{key}:next"
        self.batches = 0

    async def _get(self, suffix: str) -> str | None:
        return await self.store.get_cursor(f"{self.key}:{suffix}")

    async def _set(self, suffix: str, value: str) -> None:
        await self.store.set_cursor(f"{self.key}:{suffix}", value)

    async def open(self) -> tuple[str, list[str]]:
        """(phase, recordings already queued); a finished or new window starts afresh."""
        phase = await self._get("phase") or "done"
        cursor = await self.store.get_cursor(self.cursor_name)
        if phase == "done" or (phase == "listing" and not cursor):
            await self._set("batches", "0")
            await self._set("phase", "listing")
            return "listing", []
        self.batches = int(await self._get("batches") or 0)
        recordings: list[str] = []
        for index in range(self.batches):
            recordings += json.loads(await self._get(f"batch:{index}") or "[]")
        return phase, recordings

    async def record(self, recordings: Sequence[str], next_url: str | None) -> None:
        await self._set(f"batch:{self.batches}", json.dumps(list(recordings)))
        self.batches += 1
        await self._set("batches", str(self.batches))
        if next_url is None:
            await self._set("phase", "listed")

    async def finish(self) -> None:
        await self._set("phase", "done")


# ---------------------------------------------------------------------------- completion


@dataclass(frozen=True)
class RecordingOutcome:
    parts: int
    bytes: int
    failure: tuple[str, str] | None  # (job id, reason)
    # Every part done, but finalize still waiting or never queued (a crash in between):
    # enqueued with REARM, which both inserts a missing job and wakes a waiting one.
    finalize: NewJob | None = None


def recording_outcome(jobs: Sequence[Job]) -> RecordingOutcome | None:
    """The outcome of a recording's jobs, or None while any of them may still change."""
    stranded = stranded_finalize(jobs)
    if stranded is not None:
        return RecordingOutcome(0, 0, None, finalize=_finalize_for(stranded))
    if any(job.state in ACTIVE_STATES for job in jobs):
        return None
    parts = [job for job in jobs if job.kind is JobKind.DOWNLOAD_PART]
    done = [job for job in parts if job.state is JobState.DONE]
    size = sum(int(job.result.get("bytes") or 0) for job in done)
    failed = [job for job in jobs if job.state is JobState.FAILED]
    if failed:
        return RecordingOutcome(len(parts), size, (failed[0].id, failed[0].last_error or "failed"))
    if not jobs:
        return RecordingOutcome(0, 0, ("?", "its jobs are missing from the job store"))
    manifest = next((j for j in jobs if j.kind is JobKind.FETCH_MANIFEST), None)
    if manifest is not None and not any(j.kind is JobKind.FINALIZE_RECORDING for j in jobs):
        return RecordingOutcome(len(parts), size, None, finalize=_finalize_for(manifest))
    return RecordingOutcome(len(parts), size, None)


def _finalize_for(job: Job) -> NewJob:
    """The finalize job of the recording a manifest or finalize job belongs to."""
    payload = job.payload
    video_separate_id = (
        job.key if job.kind is JobKind.FETCH_MANIFEST else payload["video_separate_id"]
    )
    return finalize_job(
        str(payload["bot_id"]), str(payload["recording_id"]), str(video_separate_id)
    )


@dataclass
class Completion:
    """Waits until every recording the window queued has reached a final state.

    Recordings are checked in a rotating queue with a budget per check, so the cost is one
    read per recording when it finishes plus a constant per check, whatever the backlog.
    """

    store: JobStore
    wake: Callable[[], None] = lambda: None
    pending: deque[str] = field(default_factory=deque)
    known: set[str] = field(default_factory=set)
    done: int = 0
    parts: int = 0
    bytes: int = 0
    failures: list[tuple[str, str, str]] = field(default_factory=list)  # (recording, job, why)
    listing_finished: bool = False
    finished: anyio.Event = field(default_factory=anyio.Event)

    def add(self, recordings: Sequence[str]) -> None:
        for recording in recordings:
            if recording not in self.known:
                self.known.add(recording)
                self.pending.append(recording)

    @property
    def discovered(self) -> int:
        return len(self.known)

    async def check(self) -> None:
        unfinished = 0
        for _ in range(len(self.pending)):
            recording = self.pending[0]
            outcome = recording_outcome(await self.store.list_jobs(parent=recording))
            if outcome is not None and outcome.finalize is not None:
                await self.store.enqueue([outcome.finalize], OnConflict.REARM)
                self.wake()
                outcome = None
            if outcome is None:
                self.pending.rotate(-1)
                unfinished += 1
                if unfinished >= CHECK_BUDGET:
                    return
                continue
            self.pending.popleft()
            self.parts += outcome.parts
            self.bytes += outcome.bytes
            if outcome.failure is None:
                self.done += 1
            else:
                self.failures.append((recording, *outcome.failure))

    async def run(self) -> None:
        while True:
            await self.check()
            if self.listing_finished and not self.pending:
                self.finished.set()
                return
            await anyio.sleep(CHECK_SECONDS)


# ---------------------------------------------------------------------------- progress


@dataclass
class Counters:
    pages: int = 0
    listing: bool = True


class BackfillProgress:
    """Rich bars on a terminal, a structured log line every few seconds otherwise."""

    def __init__(self, ctx: PipelineContext, completion: Completion, counters: Counters) -> None:
        self.ctx, self.completion, self.counters = ctx, completion, counters
        self.started = time.monotonic()

    def fields(self) -> dict[str, object]:
        c, stats = self.completion, self.ctx.stats
        elapsed = max(1e-6, time.monotonic() - self.started)
        data: dict[str, object] = {
            "pages": self.counters.pages,
            "listing": self.counters.listing,
            "recordings_discovered": c.discovered,
            "recordings_done": c.done,
            "recordings_failed": len(c.failures),
            "parts_done": stats.get("download_part_done", 0),
            "bytes_done": stats.get("bytes_downloaded", 0),
            "bytes_per_second": round(stats.get("bytes_downloaded", 0) / elapsed),
        }
        finished = c.done + len(c.failures)
        if not self.counters.listing and finished:
            rate = finished / elapsed
            data["eta_seconds"] = round((c.discovered - finished) / rate)
        return data

    async def run(self, show_bars: bool) -> None:
        if not show_bars:
            while True:
                await anyio.sleep(LOG_EVERY_SECONDS)
                log.info("backfill_progress", **self.fields())
        progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[detail]}"),
            TimeRemainingColumn(),
            console=Console(file=sys.stderr),
        )
        task = progress.add_task("listing", total=None, detail="")

        def render() -> None:
            f = self.fields()
            detail = (
                f"parts {f['parts_done']} · {human_bytes(int(str(f['bytes_done'])))} · "
                f"{human_bytes(int(str(f['bytes_per_second'])))}/s"
            )
            if f["recordings_failed"]:
                detail += f" · {f['recordings_failed']} failed"
            listing = f"listing (page {f['pages']}) · " if self.counters.listing else ""
            progress.update(
                task,
                description=f"{listing}recordings",
                total=None if self.counters.listing else self.completion.discovered,
                completed=self.completion.done + len(self.completion.failures),
                detail=detail,
            )

        with progress:
            try:
                while True:
                    render()
                    await anyio.sleep(REFRESH_SECONDS)
            finally:  # the command ends by cancelling this loop: show the final state last
                render()


# ---------------------------------------------------------------------------- the command


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--since", required=True, help="window start: YYYY-MM-DD or ISO 8601 (UTC if no zone)"
    )
    parser.add_argument(
        "--until",
        help="window end (default now); a plain date includes that whole day",
    )
    parser.add_argument(
        "--metadata",
        nargs="+",
        action="extend",
        metavar="KEY=VALUE",
        help="only bots whose custom metadata has KEY=VALUE; several pairs (after one flag or "
        "repeated flags) must all match",
    )
    parser.add_argument(
        "--dry-run", action="store_true", help="list what would be fetched; queue nothing"
    )
    parser.add_argument("--no-progress", action="store_true", help="never draw progress bars")
    add_common_options(parser)


def run(args: argparse.Namespace) -> int:
    try:
        window = parse_window(args, datetime.now(UTC))
    except ValueError as exc:
        print(f"recall-dl: {exc}", file=sys.stderr)
        return EXIT_USAGE
    settings = settings_from_args(args)
    settings.require_api_key()
    state = state_url(settings)
    if args.dry_run:
        return anyio.run(dry_run, settings, window, settings.out.resolve(), state)
    out = prepare_out_dir(settings.out)
    show_bars = sys.stderr.isatty() and not args.no_progress
    return anyio.run(backfill, settings, window, out, state, show_bars)


async def _stop_on_signal(scope: anyio.CancelScope, interrupted: list[bool]) -> None:
    with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async for _ in signals:
            interrupted.append(True)
            scope.cancel()
            return


async def _list_window(
    ctx: PipelineContext,
    window: Window,
    state: WindowState,
    completion: Completion,
    counters: Counters,
) -> tuple[int, int]:
    """Queue the window's recordings; returns how many of its videos are still processing
    and how many Recall failed to produce."""

    async def on_batch(jobs: Sequence[NewJob], next_url: str | None) -> None:
        recordings = [str(job.parent) for job in jobs]
        await state.record(recordings, next_url)
        completion.add(recordings)

    def on_page(result: DiscoveryResult) -> None:
        counters.pages = result.pages

    await discover(
        ctx,
        since=window.since,
        until=window.until,
        cursor_name=state.cursor_name,
        metadata=window.metadata or None,
        on_page=on_page,
        on_batch=on_batch,
    )
    processing = await count_in_window(ctx, "processing", since=window.since, until=window.until)
    failed = await count_in_window(ctx, "failed", since=window.since, until=window.until)
    return processing, failed


async def backfill(
    settings: Settings, window: Window, out: Path, state_location: str, show_bars: bool
) -> int:
    interrupted: list[bool] = []
    processing = failed_at_source = 0
    async with open_store_for(settings, state_location) as store:
        counters = Counters()
        async with open_pipeline(settings, store, out) as ctx, anyio.create_task_group() as group:
            completion = Completion(store, ctx.wake_workers)
            state = WindowState(store, window.key)
            phase, queued = await state.open()
            completion.add(queued)
            log.info("backfill_started", window=window.describe(), phase=phase, queued=len(queued))
            draining = anyio.Event()
            group.start_soon(_stop_on_signal, group.cancel_scope, interrupted)
            group.start_soon(run_pools, ctx, draining)
            group.start_soon(lease_keeper, ctx)
            group.start_soon(BackfillProgress(ctx, completion, counters).run, show_bars)
            group.start_soon(completion.run)
            if phase == "listing":
                processing, failed_at_source = await _list_window(
                    ctx, window, state, completion, counters
                )
            counters.listing = False
            completion.listing_finished = True
            await completion.finished.wait()
            await state.finish()
            draining.set()
            group.cancel_scope.cancel()
    print(
        describe_backfill(
            window,
            completion,
            processing,
            failed_at_source=failed_at_source,
            interrupted=bool(interrupted),
        )
    )
    if interrupted:
        print("interrupted: run the same command again to resume", file=sys.stderr)
        return EXIT_INTERRUPTED
    return EXIT_FAILED if completion.failures else EXIT_OK


def describe_backfill(
    window: Window,
    completion: Completion,
    processing: int,
    *,
    failed_at_source: int = 0,
    interrupted: bool,
) -> str:
    c = completion
    incomplete = c.discovered - c.done - len(c.failures)
    lines = [
        f"backfill {window.describe()}: {c.discovered} recording(s): {c.done} done, "
        f"{len(c.failures)} failed"
        + (f", {incomplete} incomplete" if incomplete else "")
        + f"; {c.parts} part(s), {human_bytes(c.bytes)}"
    ]
    for recording, job, reason in c.failures[:FAILURES_SHOWN]:
        lines.append(f"  FAILED recording {recording}: {reason} [{job}]")
    if len(c.failures) > FAILURES_SHOWN:
        lines.append(f"  … and {len(c.failures) - FAILURES_SHOWN} more (recall-dl status)")
    if c.failures:
        lines.append("  re-queue failures with `recall-dl retry`, then run this command again")
    if processing and not interrupted:
        lines.append(
            f"{processing} video(s) of this window are still processing: "
            "run the same command later to fetch them"
        )
    if failed_at_source and not interrupted:
        lines.append(
            f"{failed_at_source} video(s) of this window failed at Recall (video_separate "
            "status 'failed', nothing to download; its sub_code says why)"
        )
    return "\n".join(lines)


# ---------------------------------------------------------------------------- dry run


@dataclass
class Planned:
    job: NewJob
    participants: int | None = None
    parts: int | None = None
    bytes_known: int = 0
    parts_known: int = 0
    error: str | None = None


async def _plan(ctx: PipelineContext, item: Planned) -> None:
    """Read the manifest (nothing is queued) and what the store already has of it."""
    try:
        vs = await ctx.client.get_video_separate(item.job.key)
        if not vs.download_url:
            item.error = f"video_separate is {vs.status.code}"
            return
        parts = await ctx.client.fetch_manifest(vs.download_url)
    except (JobFailed, RetryLater) as exc:
        item.error = exc.reason
        return
    item.participants = len({part.participant.id for part in parts})
    item.parts = len(parts)
    for part in parts:
        job = await ctx.store.get(job_id(JobKind.DOWNLOAD_PART, part.id))
        if job is not None and job.state is JobState.DONE:
            item.parts_known += 1
            item.bytes_known += int(job.result.get("bytes") or 0)


async def dry_run(settings: Settings, window: Window, out: Path, state_location: str) -> int:
    planned: list[Planned] = []

    async def collect(jobs: Sequence[NewJob], _next: str | None) -> None:
        planned.extend(Planned(job) for job in jobs)

    async with (
        open_store_for(settings, state_location) as store,
        open_pipeline(settings, store, out) as ctx,
    ):
        result = await discover(
            ctx,
            since=window.since,
            until=window.until,
            metadata=window.metadata or None,
            dry_run=True,
            on_batch=collect,
        )
        limiter = anyio.CapacityLimiter(max(1, settings.api_concurrency))

        async def plan(item: Planned) -> None:
            async with limiter:
                await _plan(ctx, item)

        async with anyio.create_task_group() as group:
            for item in planned:
                group.start_soon(plan, item)
        processing = await count_in_window(
            ctx, "processing", since=window.since, until=window.until
        )
    planned.sort(key=lambda p: (-p.job.priority, str(p.job.parent)))
    for line in describe_plan(window, planned, result, processing):
        print(line)
    return EXIT_OK


def describe_plan(
    window: Window, planned: Sequence[Planned], result: DiscoveryResult, processing: int
) -> list[str]:
    lines = []
    for item in planned:
        job = item.job
        head = f"{job.bot_id}/{job.parent}  expires {job.payload.get('expires_at') or 'never'}"
        if item.error:
            lines.append(f"{head}  cannot read the manifest: {item.error}")
            continue
        line = f"{head}  participants {item.participants}  parts {item.parts}"
        if item.parts_known:
            line += f"  (already downloaded {item.parts_known}, {human_bytes(item.bytes_known)})"
        lines.append(line)
    parts = sum(p.parts or 0 for p in planned)
    known = sum(p.bytes_known for p in planned)
    all_known = all(p.parts is not None and p.parts_known == p.parts for p in planned)
    size = (
        human_bytes(known)
        if all_known
        else (f"unknown (the manifests list no sizes; {human_bytes(known)} already downloaded)")
    )
    lines.append(
        f"dry run {window.describe()}: {len(planned)} recording(s), "
        f"{sum(p.participants or 0 for p in planned)} participant(s), {parts} part(s), "
        f"total bytes {size}; {result.pages} list page(s) read; nothing was queued"
    )
    if processing:
        lines.append(f"{processing} video(s) of this window are still processing")
    return lines
