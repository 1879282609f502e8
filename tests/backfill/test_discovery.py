"""discover() against the in-process simulator, and the pure parts of backfill."""

from __future__ import annotations

import argparse
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from downloader.app import open_pipeline, open_store_for
from downloader.cli.backfill import WindowState, parse_window, recording_outcome
from downloader.config import Secret, Settings
from downloader.discovery import PRIORITY_NEVER, DiscoveryResult, discover, expiry_priority
from downloader.lifecycle import JobKind, JobState
from downloader.pipeline import PipelineContext
from downloader.simulator import BotSpec, Simulator, SimulatorConfig
from downloader.store.protocol import Job, NewJob

SINCE = datetime(2000, 1, 1, tzinfo=UTC)


@pytest.fixture
async def sim() -> AsyncIterator[Simulator]:
    config = SimulatorConfig(bots=23, page_size=5, time_scale=0, created_at_spread_days=5, seed=31)
    async with Simulator(config) as running:
        yield running


@pytest.fixture
async def ctx(sim: Simulator, tmp_path: Path) -> AsyncIterator[PipelineContext]:
    settings = Settings(api_key=Secret(sim.api_key), api_url=sim.api_url, out=tmp_path / "out")
    async with (
        open_store_for(settings, str(tmp_path / "state.db")) as store,
        open_pipeline(settings, store, tmp_path / "out") as context,
    ):
        yield context


async def manifest_jobs(ctx: PipelineContext) -> list[Job]:
    return await ctx.store.list_jobs(kind=JobKind.FETCH_MANIFEST)


@pytest.mark.anyio
async def test_lists_every_page_and_queues_each_video_once(
    ctx: PipelineContext, sim: Simulator
) -> None:
    pages: list[DiscoveryResult] = []
    result = await discover(ctx, since=SINCE, on_page=pages.append)
    assert result == DiscoveryResult(pages=5, seen=23, new=23)
    assert [p.pages for p in pages] == [1, 2, 3, 4, 5]
    jobs = await manifest_jobs(ctx)
    assert {j.bot_id for j in jobs} == set(sim.bot_ids)
    assert all(j.priority == PRIORITY_NEVER for j in jobs)  # the simulator keeps media forever
    assert all(j.payload["video_separate_id"] == j.key for j in jobs)

    retrieves = sim.stats()["requests"]["recording_retrieve"]
    again = await discover(ctx, since=SINCE)
    assert again == DiscoveryResult(pages=5, seen=23, new=0)
    # Known recordings are not retrieved again: a second pass costs list calls only.
    assert sim.stats()["requests"]["recording_retrieve"] == retrieves


@pytest.mark.anyio
async def test_cursor_resumes_after_the_last_stored_page(ctx: PipelineContext) -> None:
    stored: list[str | None] = []

    async def stop_after_two(jobs: Any, next_url: str | None) -> None:
        stored.append(next_url)
        if len(stored) == 2:
            raise KeyboardInterrupt  # stands for Ctrl-C between two pages

    with pytest.raises(KeyboardInterrupt):
        await discover(ctx, since=SINCE, cursor_name="t", on_batch=stop_after_two)
    # The second page's jobs were queued but its cursor was not stored: it is listed again.
    assert stored[0] is not None
    assert await ctx.store.get_cursor("t") == stored[0]
    result = await discover(ctx, since=SINCE, cursor_name="t")
    assert result.pages == 4  # pages 2..5
    assert result.new == 23 - 10
    assert await ctx.store.get_cursor("t") == ""  # finished: the next call starts afresh
    assert (await discover(ctx, since=SINCE, cursor_name="t")).pages == 5


@pytest.mark.anyio
async def test_dry_run_queues_nothing_and_leaves_the_cursor(ctx: PipelineContext) -> None:
    seen: list[NewJob] = []

    async def collect(jobs: Any, _next: str | None) -> None:
        seen.extend(jobs)

    result = await discover(ctx, since=SINCE, cursor_name="d", dry_run=True, on_batch=collect)
    assert result == DiscoveryResult(pages=5, seen=23, new=0)
    assert len(seen) == 23
    assert await manifest_jobs(ctx) == []
    assert await ctx.store.get_cursor("d") is None


@pytest.mark.anyio
async def test_metadata_filter_uses_the_bots_list(ctx: PipelineContext, sim: Simulator) -> None:
    wanted = {sim.add_bot(BotSpec(metadata={"team": "blue"})) for _ in range(7)}
    sim.add_bot(BotSpec(metadata={"team": "red"}))
    result = await discover(ctx, since=SINCE, metadata={"team": "blue"})
    assert result.new == 7
    assert {j.bot_id for j in await manifest_jobs(ctx)} == wanted
    assert sim.stats()["requests"].get("recording_retrieve", 0) == 0
    assert sim.stats()["requests"]["bot_list"] == 2  # seven bots, five a page


def test_sooner_expiry_runs_first_and_never_last() -> None:
    soon = expiry_priority("2025-01-02T00:00:00Z")
    later = expiry_priority("2025-03-01T12:00:00+00:00")
    assert soon > later > expiry_priority(None) == PRIORITY_NEVER
    assert expiry_priority("not a time") == PRIORITY_NEVER
    assert max(soon, later) < 0  # live work (priority 0) goes ahead of any backlog
    assert PRIORITY_NEVER > -(2**31)


def window(**values: Any) -> argparse.Namespace:
    return argparse.Namespace(**{"since": None, "until": None, "metadata": None, **values})


NOW = datetime(2025, 6, 1, 12, tzinfo=UTC)


def test_window_dates() -> None:
    w = parse_window(window(since="2025-01-01", until="2025-01-31"), NOW)
    assert w.since == datetime(2025, 1, 1, tzinfo=UTC)
    assert w.until == datetime(2025, 2, 1, tzinfo=UTC)  # a plain date includes that day
    w = parse_window(window(since="2025-01-01T10:00:00+02:00"), NOW)
    assert w.since == datetime(2025, 1, 1, 8, tzinfo=UTC)
    assert w.until == NOW
    assert parse_window(window(since="2025-01-01T10:00"), NOW).since.tzinfo is not None
    with pytest.raises(ValueError, match="is in the future"):  # no --until: the end is now
        parse_window(window(since="2025-07-01"), NOW)
    with pytest.raises(ValueError, match="is after --until"):
        parse_window(window(since="2025-07-01", until="2025-06-01"), NOW)


def test_window_key_names_window_and_filters() -> None:
    a = parse_window(window(since="2025-01-01"), NOW)
    assert a.key == parse_window(window(since="2025-01-01"), datetime.now(UTC)).key  # open end
    keys = {
        a.key,
        parse_window(window(since="2025-01-02"), NOW).key,
        parse_window(window(since="2025-01-01", until="2025-05-01"), NOW).key,
        parse_window(window(since="2025-01-01", metadata=["team=blue"]), NOW).key,
    }
    assert len(keys) == 4


def job(kind: JobKind, state: JobState, **extra: Any) -> Job:
    values: dict[str, Any] = {
        "id": f"{kind.value}:x",
        "kind": kind,
        "key": "x",
        "state": state,
        "payload": {"bot_id": "b", "recording_id": "r"},
        "progress": {},
        "result": {},
        "bot_id": "b",
        "parent": "r",
        "priority": 0,
        "attempts": 0,
        "run_after": 0.0,
        "last_error": None,
        "worker": None,
        "lease_until": None,
        "created_at": 0.0,
        "updated_at": 0.0,
        **extra,
    }
    return Job(**values)


def test_recording_outcomes() -> None:
    fm, part, fin = JobKind.FETCH_MANIFEST, JobKind.DOWNLOAD_PART, JobKind.FINALIZE_RECORDING
    done, running, failed = JobState.DONE, JobState.RUNNING, JobState.FAILED
    assert recording_outcome([job(fm, done), job(part, running)]) is None
    finished = recording_outcome(
        [job(fm, done), job(part, done, result={"bytes": 5}), job(fin, done)]
    )
    assert finished is not None
    assert (finished.parts, finished.bytes, finished.failure) == (1, 5, None)
    broken = recording_outcome([job(fm, done), job(part, failed, last_error="HTTP 403")])
    assert broken is not None
    assert broken.failure == ("download_part:x", "HTTP 403")
    # Every part done but finalize never queued (a crash in between): not finished yet.
    gap = recording_outcome([job(fm, done), job(part, done)])
    assert gap is not None
    assert gap.finalize is not None and gap.finalize.kind is fin
    # Every part done, finalize waiting for its safety-net delay: woken, not finished yet.
    waiting = job(
        fin,
        JobState.PENDING,
        payload={"bot_id": "b", "recording_id": "r", "video_separate_id": "v"},
    )
    stranded = recording_outcome([job(fm, done), job(part, done), waiting])
    assert stranded is not None and stranded.failure is None
    assert stranded.finalize is not None and stranded.finalize.payload["video_separate_id"] == "v"


@pytest.mark.anyio
async def test_window_state_resumes_and_restarts(ctx: PipelineContext) -> None:
    state = WindowState(ctx.store, "backfill:w")
    assert await state.open() == ("listing", [])
    await state.record(["r1", "r2"], "http://next")
    await ctx.store.set_cursor(state.cursor_name, "http://next")
    again = WindowState(ctx.store, "backfill:w")
    assert await again.open() == ("listing", ["r1", "r2"])
    await again.record(["r3"], None)
    assert await WindowState(ctx.store, "backfill:w").open() == ("listed", ["r1", "r2", "r3"])
    await again.finish()
    assert await WindowState(ctx.store, "backfill:w").open() == ("listing", [])
