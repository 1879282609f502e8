"""RecallClient against the simulator over real sockets: every API behaviour and API fault knob."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import pytest

from downloader.config import Secret, Settings
from downloader.errors import AuthError, NotFound, RefreshUrl, ServerBusy
from downloader.recall import EndpointClass, RecallClient, RetryPolicy
from downloader.simulator import (
    BotSpec,
    FaultConfig,
    ParticipantSpec,
    Simulator,
    SimulatorConfig,
)

CLEAN = {
    "auth_to_media": 0,
    "auth_to_manifest": 0,
    "body_on_get": 0,
    "missing_slash": 0,
    "over_limit": 0,
    "early_retry": 0,
    "redirect_followed": 0,
}


def sim_config(**changes: Any) -> SimulatorConfig:
    base = SimulatorConfig(
        bots=3,
        participants_per_bot=2,
        parts_per_participant=2,
        part_size=4096,
        seed=7,
        api_key="sim-key",
        page_size=2,
        time_scale=0,
    )
    return dataclasses.replace(base, **changes)


def client_settings(sim: Simulator, **changes: Any) -> Settings:
    cfg = sim.config
    base = Settings(
        api_key=Secret(sim.api_key),
        api_url=sim.api_url,
        list_rate_limit=cfg.list_limit_per_min or 60,
        retrieve_rate_limit=cfg.retrieve_limit_per_min or 300,
        rate_window_seconds=cfg.rate_window_seconds,
        api_timeout_seconds=5.0,
        connect_timeout_seconds=2.0,
    )
    return dataclasses.replace(base, **changes)


@asynccontextmanager
async def running(
    config: SimulatorConfig, **changes: Any
) -> AsyncIterator[tuple[Simulator, RecallClient]]:
    retry = changes.pop("retry", None)
    async with (
        Simulator(config) as sim,
        RecallClient.open(client_settings(sim, **changes), retry=retry) as client,
    ):
        yield sim, client


def violations(sim: Simulator) -> dict[str, int]:
    return {k: v for k, v in sim.stats()["violations"].items() if k in CLEAN}


def api_entries(sim: Simulator) -> list[dict[str, Any]]:
    return [e for e in sim.request_log() if e["host"] == "api"]


@pytest.mark.anyio
async def test_walk_every_bot_recording_video_separate_and_manifest() -> None:
    async with running(sim_config()) as (sim, client):
        bots = [b async for b in client.iter_bots()]
        assert sorted(b.id for b in bots) == sorted(sim.bot_ids)
        all_recordings = [r.id async for r in client.iter_recordings()]
        total_parts = 0
        for listed in bots:
            bot = await client.get_bot(listed.id)
            assert bot.status is not None
            assert bot.status.code == "done"
            recordings = [r.id async for r in client.iter_recordings(bot_id=bot.id)]
            assert recordings == sim.recording_ids(bot.id)
            assert [r.id for r in bot.recordings] == recordings
            for rec_id in recordings:
                assert rec_id in all_recordings
                rec = await client.get_recording(rec_id)
                assert rec.bot_id == bot.id
                found = [v async for v in client.iter_video_separates(recording_id=rec_id)]
                assert [v.id for v in found] == [sim.video_separate_id(rec_id)]
                vs = await client.get_video_separate(found[0].id)
                assert vs.status.code == "done"
                assert vs.recording_id == rec_id
                assert vs.download_url is not None
                parts = await client.fetch_manifest(vs.download_url)
                assert sorted(p.id for p in parts) == sorted(p["id"] for p in sim.parts(rec_id))
                total_parts += len(parts)
        assert len(all_recordings) == 3
        assert total_parts == sum(
            len(sim.parts(r)) for b in sim.bot_ids for r in sim.recording_ids(b)
        )
        assert total_parts >= 3 * 2 * 2
        assert violations(sim) == CLEAN
        log = sim.request_log()
        assert all(e["has_auth"] for e in log if e["host"] == "api")
        assert not any(e["has_auth"] for e in log if e["host"] == "manifest")
        assert all(e["path"].endswith("/") for e in api_entries(sim))
        # Pagination really happened (page_size=2 over 3 bots / 3 recordings).
        assert sum(1 for e in api_entries(sim) if e["route"] == "bot_list") == 2
        assert any("cursor=" in e["query"] for e in api_entries(sim))


@pytest.mark.anyio
async def test_filters_and_resumable_video_separate_pages() -> None:
    async with running(sim_config(bots=5, page_size=2)) as (sim, client):
        tagged = sim.add_bot(BotSpec(participants=[ParticipantSpec(1)], metadata={"team": "x"}))
        fatal = sim.add_bot(BotSpec(outcome="fatal", sub_code="meeting_not_found"))
        assert [b.id async for b in client.iter_bots(metadata={"team": "x"})] == [tagged]
        assert [b.id async for b in client.iter_bots(status=["fatal"])] == [fatal]
        both = {b.id async for b in client.iter_bots(status=["fatal", "done"])}
        assert {tagged, fatal} <= both
        fatal_bot = await client.get_bot(fatal)
        assert fatal_bot.status is not None
        assert (fatal_bot.status.code, fatal_bot.status.sub_code) == ("fatal", "meeting_not_found")

        everything = [v.id async for v in client.iter_video_separates()]
        done = [v.id async for v in client.iter_video_separates(status_code="done")]
        assert set(done) <= set(everything)
        assert len(everything) == 6
        resumed: list[str] = []
        items, cursor = await client.video_separate_page()
        resumed += [v.id for v in items]
        pages = 1
        while cursor is not None:
            items, cursor = await client.video_separate_page(cursor_url=cursor)
            resumed += [v.id for v in items]
            pages += 1
        assert resumed == everything
        assert pages == 3
        assert violations(sim) == CLEAN


@pytest.mark.anyio
async def test_no_video_separate_and_failed_media_are_data_not_crashes() -> None:
    async with running(sim_config(bots=0)) as (sim, client):
        none = sim.add_bot(BotSpec(participants=[ParticipantSpec(1)], outcome="no_video_separate"))
        failed = sim.add_bot(
            BotSpec(participants=[ParticipantSpec(1)], outcome="video_separate_failed")
        )
        [none_rec] = sim.recording_ids(none)
        assert [v async for v in client.iter_video_separates(recording_id=none_rec)] == []
        [failed_rec] = sim.recording_ids(failed)
        [vs] = [v async for v in client.iter_video_separates(recording_id=failed_rec)]
        assert vs.status.code == "failed"
        assert vs.download_url is None


@pytest.mark.anyio
async def test_wrong_key_and_missing_resources() -> None:
    async with Simulator(sim_config()) as sim:
        settings = client_settings(sim, api_key=Secret("not-the-key"), region="us-west-2")
        async with RecallClient.open(settings) as client:
            with pytest.raises(AuthError):
                await client.verify_key()
            with pytest.raises(AuthError, match="RECALL_REGION=us-west-2") as info:
                await client.get_bot(sim.bot_ids[0])
            assert "not-the-key" not in str(info.value)
        async with RecallClient.open(client_settings(sim)) as client:
            await client.verify_key()
            with pytest.raises(NotFound, match="bot missing-bot not found"):
                await client.get_bot("missing-bot")
            with pytest.raises(NotFound):
                await client.get_video_separate("nope")
            with pytest.raises(NotFound):
                await client.get_recording("nope")


@pytest.mark.anyio
async def test_expired_manifest_link_asks_for_a_refresh() -> None:
    async with running(sim_config(bots=1, url_ttl_seconds=60.0)) as (sim, client):
        [rec] = sim.recording_ids(sim.bot_ids[0])
        vs = await client.get_video_separate(sim.video_separate_id(rec))
        assert vs.download_url is not None
        sim.advance_time(120.0)
        with pytest.raises(RefreshUrl):
            await client.fetch_manifest(vs.download_url)
        fresh = await client.get_video_separate(vs.id)
        assert fresh.download_url is not None
        assert len(await client.fetch_manifest(fresh.download_url)) == len(sim.parts(rec))


@pytest.mark.anyio
async def test_api_5xx_fault_is_retried() -> None:
    async with running(sim_config(faults=FaultConfig(api_5xx=3))) as (sim, client):
        bots = [b.id async for b in client.iter_bots()]
        for bot_id in bots:
            await client.get_bot(bot_id)
        assert sorted(bots) == sorted(sim.bot_ids)
        assert sim.stats()["faults_injected"]["api_5xx"] == 3
        assert client.stats.retries == 3
        assert violations(sim) == CLEAN


@pytest.mark.anyio
async def test_api_5xx_that_never_ends_surfaces_as_server_busy() -> None:
    config = sim_config(faults=FaultConfig(api_5xx=1.0))
    async with running(config, retry=RetryPolicy(attempts=3)) as (sim, client):
        with pytest.raises(ServerBusy):
            await client.get_bot(sim.bot_ids[0])
        assert sim.stats()["faults_injected"]["api_5xx"] == 3


@pytest.mark.anyio
async def test_api_429_fault_pauses_the_class_and_is_absorbed() -> None:
    faults = FaultConfig(api_429=2, retry_after_seconds=1)
    async with running(sim_config(faults=faults)) as (sim, client):
        bots = [b.id async for b in client.iter_bots()]
        for bot_id in bots:
            await client.get_bot(bot_id)
        stats = sim.stats()
        assert sum(stats["served_429"].values()) == 2
        assert sum(client.stats.rate_limited.values()) == 2
        assert client.stats.retries == 0
        assert violations(sim) == CLEAN  # in particular no early_retry


@pytest.mark.anyio
async def test_api_429_fault_under_concurrency() -> None:
    """Concurrent tasks all finish; only requests already in flight when a 429 was served
    can reach the server before its Retry-After (the client cannot recall them)."""
    faults = FaultConfig(api_429=2, retry_after_seconds=1)
    async with running(sim_config(bots=6, faults=faults), api_concurrency=4) as (sim, client):
        async with anyio.create_task_group() as tg:
            for _ in range(3):
                for bot_id in sim.bot_ids:
                    tg.start_soon(client.get_bot, bot_id)
        stats = sim.stats()
        assert stats["served_429"]["retrieve"] == 2
        assert client.stats.requests[EndpointClass.RETRIEVE] == 18 + 2
        in_flight = (4 - 1) * 2
        assert stats["violations"]["early_retry"] <= in_flight
        assert stats["violations"]["over_limit"] == 0


@pytest.mark.anyio
async def test_manifest_5xx_fault_is_retried() -> None:
    async with running(sim_config(bots=1, faults=FaultConfig(manifest_5xx=2))) as (sim, client):
        [rec] = sim.recording_ids(sim.bot_ids[0])
        vs = await client.get_video_separate(sim.video_separate_id(rec))
        assert vs.download_url is not None
        assert len(await client.fetch_manifest(vs.download_url)) == len(sim.parts(rec))
        assert sim.stats()["faults_injected"]["manifest_5xx"] == 2
        assert client.stats.manifest_requests == 3
        assert violations(sim) == CLEAN


@pytest.mark.anyio
@pytest.mark.slow
async def test_concurrent_tasks_never_exceed_the_server_window() -> None:
    """Many tasks on both classes against tight limits: no 429 is ever provoked."""
    config = sim_config(
        bots=6, list_limit_per_min=5, retrieve_limit_per_min=8, rate_window_seconds=1.0
    )
    async with running(config, api_concurrency=4) as (sim, client):
        ids = sim.bot_ids

        async def lister() -> None:
            [b async for b in client.iter_bots()]  # 3 pages each

        async def getter(bot_id: str) -> None:
            await client.get_bot(bot_id)

        async with anyio.create_task_group() as tg:
            for _ in range(4):
                tg.start_soon(lister)
            for _ in range(3):
                for bot_id in ids:
                    tg.start_soon(getter, bot_id)
        stats = sim.stats()
        assert stats["served_429"] == {"list": 0, "retrieve": 0}
        assert violations(sim) == CLEAN
        assert client.stats.requests == {EndpointClass.LIST: 12, EndpointClass.RETRIEVE: 18}
        for cls, limit in (("list", 5), ("retrieve", 8)):
            times = sorted(stats["api_request_times"][cls])
            assert all(times[i + limit] - times[i] >= 1.0 for i in range(len(times) - limit))
