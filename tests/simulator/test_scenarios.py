"""Scenario building, lifecycles over time, the threaded runner, the command and scale."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
import tracemalloc
import urllib.request
from typing import Any

import pytest

from downloader.simulator import (
    BotSpec,
    Lifecycle,
    ParticipantSpec,
    Simulator,
    SimulatorConfig,
    SimulatorThread,
)
from downloader.simulator.queries import (
    BotFilter,
    Cursor,
    MediaFilter,
    bot_page,
    cursor_page,
    recording_streams,
    video_separate_streams,
)
from tests.simulator.helpers import FAST, running

HOSTILE = [None, "", "nul\x00byte", "x" * 300, "😀 李小龍", "a/b", "../../x", "Dup", "Dup"]


@pytest.mark.anyio
async def test_hostile_names_and_rejoins_pass_through_verbatim() -> None:
    participants = [ParticipantSpec(id=100 + i, name=n) for i, n in enumerate(HOSTILE)]
    participants.append(ParticipantSpec(id=100, name=None, parts=2, is_host=True))  # rejoined
    async with running() as c:
        bot_id = c.sim.add_bot(BotSpec(participants=participants, metadata={"k": "v"}))
        bot = await c.api_json(f"/api/v1/bot/{bot_id}/")
        assert bot["metadata"] == {"k": "v"}
        parts = await c.manifest(bot["recordings"][0]["id"])
        assert [p["participant"]["name"] for p in parts] == [*HOSTILE, None, None]
        assert [p["participant"]["id"] for p in parts][-3:] == [108, 100, 100]
        assert len({p["id"] for p in parts}) == len(parts)
        assert bot_id not in c.sim.bot_ids  # bot_ids lists generated bots only


@pytest.mark.anyio
async def test_outcomes_fatal_failed_and_missing_video_separate() -> None:
    async with running() as c:
        fatal = c.sim.add_bot(BotSpec(outcome="fatal", sub_code="bot_kicked_from_call"))
        failed = c.sim.add_bot(BotSpec(outcome="video_separate_failed"))
        none = c.sim.add_bot(BotSpec(outcome="no_video_separate"))
        bot = await c.api_json(f"/api/v1/bot/{fatal}/")
        assert bot["status_changes"][-1]["code"] == "fatal"
        assert bot["status_changes"][-1]["sub_code"] == "bot_kicked_from_call"
        assert bot["recordings"] == []
        assert c.sim.recording_ids(fatal) == []

        rec = c.sim.recording_ids(failed)[0]
        (vs,) = (await c.api_json("/api/v1/video_separate/", {"recording_id": rec}))["results"]
        assert vs["status"] == {
            "code": "failed",
            "sub_code": "video_separate_processing_failed",
            "updated_at": vs["status"]["updated_at"],
        }
        assert vs["data"]["download_url"] is None

        bot = await c.api_json(f"/api/v1/bot/{none}/")
        assert bot["recording_config"]["video_separate_mp4"] is None
        rec = bot["recordings"][0]["id"]
        listed = await c.api_json("/api/v1/video_separate/", {"recording_id": rec})
        assert listed["results"] == []


@pytest.mark.anyio
async def test_lifecycle_progresses_with_the_clock() -> None:
    config = FAST.replace(time_scale=1.0, bot_lifecycle=Lifecycle(100, 100, 100, 100, 200))
    async with running(config) as c:
        bot_id = c.sim.bot_ids[0]

        async def codes() -> list[str]:
            bot = await c.api_json(f"/api/v1/bot/{bot_id}/")
            return [s["code"] for s in bot["status_changes"]]

        assert await codes() == ["joining_call"]
        assert (await c.api_json(f"/api/v1/bot/{bot_id}/"))["join_at"] is not None
        assert (await c.api_json("/api/v1/recording/"))["results"] == []
        c.sim.advance_time(150)
        assert await codes() == ["joining_call", "in_call_recording"]
        recording = (await c.api_json(f"/api/v1/bot/{bot_id}/"))["recordings"][0]
        assert recording["status"]["code"] == "processing"
        assert recording["completed_at"] is None
        assert (await c.api_json("/api/v1/video_separate/"))["results"] == []
        c.sim.advance_time(200)
        assert (await codes())[-1] == "done"
        vs = (await c.api_json("/api/v1/video_separate/"))["results"]
        assert vs[0]["status"]["code"] == "processing"
        assert vs[0]["data"]["download_url"] is None
        processing = await c.api_json("/api/v1/video_separate/", {"status_code": "processing"})
        assert len(processing["results"]) == 3
        c.sim.advance_time(200)
        (vs,) = (await c.api_json("/api/v1/video_separate/", {"recording_id": vs[0]["recording"]["id"]}))["results"]  # fmt: skip
        assert vs["status"]["code"] == "done"
        assert vs["data"]["download_url"]


def read_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.load(response)


def test_simulator_thread_serves_synchronous_callers() -> None:
    with SimulatorThread(FAST) as sim:
        assert sim.api_url.startswith("http://127.0.0.1:")
        bot_id = sim.add_bot(BotSpec(participants=[ParticipantSpec(id=1, name="Solo")]))
        assert len(sim.bot_ids) == 3
        recording_id = sim.recording_ids(bot_id)[0]
        (part,) = sim.parts(recording_id)
        assert part["participant"]["name"] == "Solo"
        with urllib.request.urlopen(part["download_url"], timeout=10) as response:
            assert response.read() == sim.part_content(part["id"])
        stats = read_json(sim.api_url + "/_sim/stats")
        assert stats["media"]["full_requests"] == 1
        assert sim.stats()["media"]["full_requests"] == 1


def test_command_prints_exports_and_stops_on_sigterm() -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "downloader.simulator", "--port", "0", "--bots", "2",
         "--part-size", "4K", "--time-scale", "0", "--faults", "truncate=1"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        lines = [proc.stdout.readline().strip() for _ in range(6)]
        assert lines[0].startswith("export RECALL_API_URL=http://127.0.0.1:")
        assert lines[1] == "export RECALL_API_KEY=sim-key"
        assert lines[2] == "export RECALL_DL_ALLOWED_HOSTS=127.0.0.1"
        assert lines[3] == "bot ids:"
        api_url = lines[0].split("=", 1)[1]
        request = urllib.request.Request(
            f"{api_url}/api/v1/bot/{lines[4]}/", headers={"Authorization": "sim-key"}
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            assert json.load(response)["id"] == lines[4]
    finally:
        proc.terminate()
        _, stderr = proc.communicate(timeout=20)
    assert proc.returncode == 0, stderr


def test_fifty_thousand_bots_are_lazy_and_lists_are_cheap() -> None:
    config = SimulatorConfig(bots=50_000, created_at_spread_days=30, time_scale=0, page_size=50)
    tracemalloc.start()
    try:
        sim = Simulator(config)  # no sockets needed: the queries are pure
        world, now = sim.state.world, sim.state.clock.now_us()
        started = time.perf_counter()
        count, page = bot_page(world, now, BotFilter(statuses=frozenset({"done"})), 700, 50)
        assert count == 50_000
        assert [b.index for b in page] == list(range(34_950, 35_000))
        cursor: Cursor | None = None
        seen = 0
        for _ in range(20):  # 20 pages deep into the recordings
            result = cursor_page(recording_streams(world, now, MediaFilter()), cursor, 50)
            seen += len(result.results)
            cursor = result.next
        assert seen == 1000
        middle = world.recording(world.ordinary_bot(25_000), 0).created_us
        window = MediaFilter(created_after=middle)
        late = cursor_page(video_separate_streams(world, now, window), None, 50)
        assert late.results[0].bot.index >= 25_000
        elapsed = time.perf_counter() - started
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert elapsed < 5.0
    assert peak < 100 * 1024 * 1024


@pytest.mark.anyio
async def test_arrivals_add_ordinary_bots_over_time() -> None:
    config = FAST.replace(bots=0, arrival_interval_seconds=0.05)
    async with Simulator(config) as sim:
        await asyncio.sleep(0.3)  # arrivals follow the wall clock: waiting is the point
        assert len(sim.bot_ids) >= 2
        assert sim.state.world.added[0].ordinary
