"""Scenario building, lifecycles over time, the threaded runner, the command and scale."""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import socket
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
    command,
)
from downloader.simulator.clock import parse_iso
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
        async with asyncio.timeout(10):
            await sim.wait_for_arrivals(2)
        assert len(sim.bot_ids) >= 2
        assert sim.state.world.added[0].ordinary


HOUR_US = 3600 * 1_000_000


@pytest.mark.anyio
async def test_retention_sets_expires_at_from_the_done_time() -> None:
    # recall-api.md §8: retention is {"type": "timed", "hours": N} or {"type": "forever"} (or
    # null); the clock starts when the recording is done; expires_at is null when kept forever.
    config = FAST.replace(bots=1, retention_hours=24)
    async with running(config) as c:
        two_hours = c.sim.add_bot(BotSpec(participants=[ParticipantSpec(id=1)], retention=2))
        forever = c.sim.add_bot(BotSpec(participants=[ParticipantSpec(id=1)], retention="forever"))
        cases = [(c.sim.bot_ids[0], 24), (two_hours, 2)]
        for bot_id, hours in cases:
            bot = await c.api_json(f"/api/v1/bot/{bot_id}/")
            assert bot["recording_config"]["retention"] == {"type": "timed", "hours": hours}
            (rec,) = bot["recordings"]
            done = parse_iso(rec["status"]["updated_at"])
            assert rec["status"]["code"] == "done"
            assert parse_iso(rec["expires_at"]) == done + hours * HOUR_US
            for listed in (
                await c.api_json(f"/api/v1/recording/{rec['id']}/"),
                *(await c.walk("/api/v1/recording/", {"bot_id": bot_id})),
            ):
                assert listed["expires_at"] == rec["expires_at"]
        bot = await c.api_json(f"/api/v1/bot/{forever}/")
        assert bot["recording_config"]["retention"] == {"type": "forever"}
        assert bot["recordings"][0]["expires_at"] is None

    async with running(FAST) as c:  # no retention set anywhere: kept forever, shown as null
        bot = await c.api_json(f"/api/v1/bot/{c.sim.bot_ids[0]}/")
        assert bot["recording_config"]["retention"] is None
        assert bot["recordings"][0]["expires_at"] is None


@pytest.mark.anyio
async def test_expires_at_is_null_until_the_recording_is_done() -> None:
    config = FAST.replace(bots=0, time_scale=1.0, retention_hours=1.5)
    async with running(config) as c:
        bot_id = c.sim.add_bot(
            BotSpec(participants=[ParticipantSpec(id=1)], lifecycle=(10, 10, 10, 10))
        )
        c.sim.advance_time(15)
        (rec,) = (await c.api_json(f"/api/v1/bot/{bot_id}/"))["recordings"]
        assert (rec["status"]["code"], rec["expires_at"]) == ("processing", None)
        c.sim.advance_time(30)
        (rec,) = (await c.api_json(f"/api/v1/bot/{bot_id}/"))["recordings"]
        done = parse_iso(rec["status"]["updated_at"])
        assert parse_iso(rec["expires_at"]) == done + int(1.5 * HOUR_US)
        config_retention = (await c.api_json(f"/api/v1/bot/{bot_id}/"))["recording_config"]
        assert config_retention["retention"] == {"type": "timed", "hours": 1.5}


@pytest.mark.anyio
async def test_media_is_deleted_when_the_retention_ends() -> None:
    """recall-api.md §8: at ``expires_at`` the media is deleted: recordings and their
    video_separates turn ``deleted``, the bot ``media_expired``; links handed out before
    stop working (S3: the object no longer exists)."""
    config = FAST.replace(bots=1, time_scale=1.0, retention_hours=1)
    async with running(config) as c:
        c.sim.advance_time(3600)  # every bot done well before the hour is over
        bot_id = c.sim.bot_ids[0]
        (rec,) = (await c.api_json(f"/api/v1/bot/{bot_id}/"))["recordings"]
        assert rec["status"]["code"] == "done"
        (vs,) = await c.walk("/api/v1/video_separate/", {"recording_id": rec["id"]})
        manifest_url = vs["data"]["download_url"]
        part_url = (await c.get(manifest_url)).json()[0]["download_url"]
        expires = parse_iso(rec["expires_at"])

        c.sim.advance_time((expires - c.sim.state.clock.now_us()) / 1e6 + 1)
        bot = await c.api_json(f"/api/v1/bot/{bot_id}/")
        assert bot["status_changes"][-1]["code"] == "media_expired"
        (rec,) = bot["recordings"]
        assert rec["status"]["code"] == "deleted"
        assert parse_iso(rec["expires_at"]) == expires
        (vs,) = await c.walk("/api/v1/video_separate/", {"recording_id": rec["id"]})
        assert vs["status"]["code"] == "deleted" and vs["data"]["download_url"] is None
        # the list filter documents processing|done|failed only: a deleted one leaves "done"
        assert await c.walk("/api/v1/video_separate/", {"status_code": "done"}) == []
        for path in ("/api/v1/video_separate/", "/api/v1/recording/"):
            (listed,) = await c.walk(path)
            assert listed["status"]["code"] == "deleted", path
        expired = await c.walk("/api/v1/bot/", {"status": "media_expired"})
        assert [b["id"] for b in expired] == [bot_id]
        assert (await c.get(manifest_url)).status == 404
        gone = await c.get(part_url)
        assert gone.status == 404 and b"<Code>NoSuchKey</Code>" in gone.body


@pytest.mark.parametrize("bad", [0, -1, "soon", True, float("inf"), float("nan"), 10**9])
def test_retention_must_be_positive_hours_or_forever(bad: Any) -> None:
    with pytest.raises(ValueError, match="retention"):
        BotSpec(retention=bad)
    with pytest.raises(ValueError, match="retention_hours"):
        SimulatorConfig(retention_hours=bad)
    with pytest.raises(ValueError, match="retention_hours"):
        SimulatorConfig(retention_hours="forever")  # type: ignore[arg-type]


def simulate_args(*argv: str) -> argparse.Namespace:
    from downloader.cli import build_parser

    return build_parser().parse_args(["simulate", *argv])


@pytest.mark.anyio
async def test_simulate_flags_add_fatal_failed_and_video_separate_less_bots() -> None:
    args = simulate_args(
        "--bots", "2", "--time-scale", "0", "--part-size", "4K", "--fatal-bots", "1",
        "--failed-video-separate-bots", "2", "--no-video-separate-bots", "1",
        "--retention-hours", "48",
    )  # fmt: skip
    config = command.config_from_args(args)
    assert config.special_bots == (1, 2, 1)
    assert config.retention_hours == 48
    async with running(config) as c:
        ids = c.sim.bot_ids
        assert len(ids) == 6  # the special bots are listed with the others
        out = io.StringIO()
        command.announce(c.sim, out)
        lines = out.getvalue().splitlines()
        assert lines[3:] == [
            "bot ids:",
            *ids,
            f"fatal bots (sub_code bot_errored): {ids[2]}",
            f"bots whose video_separate failed: {ids[3]} {ids[4]}",
            f"bots without video_separate: {ids[5]}",
        ]
        for bot_id in ids[:2]:
            bot = await c.api_json(f"/api/v1/bot/{bot_id}/")
            assert bot["status_changes"][-1]["code"] == "done"
            assert bot["recordings"][0]["expires_at"] is not None

        fatal = await c.api_json(f"/api/v1/bot/{ids[2]}/")
        assert fatal["status_changes"][-1]["code"] == "fatal"
        assert fatal["status_changes"][-1]["sub_code"] == "bot_errored"
        assert fatal["recordings"] == []
        for bot_id in ids[3:5]:
            rec = c.sim.recording_ids(bot_id)[0]
            listed = await c.api_json("/api/v1/video_separate/", {"recording_id": rec})
            assert [vs["status"]["code"] for vs in listed["results"]] == ["failed"]
        none = await c.api_json(f"/api/v1/bot/{ids[5]}/")
        assert none["recording_config"]["video_separate_mp4"] is None
        listed = await c.api_json(
            "/api/v1/video_separate/", {"recording_id": none["recordings"][0]["id"]}
        )
        assert listed["results"] == []
        failed = await c.api_json("/api/v1/video_separate/", {"status_code": "failed"})
        assert len(failed["results"]) == 2
        fatal_listed = await c.api_json("/api/v1/bot/", {"status": "fatal"})
        assert [b["id"] for b in fatal_listed["results"]] == [ids[2]]


def test_simulate_help_documents_the_new_flags() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "downloader.cli", "simulate", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0
    help_text = " ".join(result.stdout.split())
    for flag in (
        "--fatal-bots N",
        "--failed-video-separate-bots N",
        "--no-video-separate-bots N",
        "--retention-hours H",
    ):
        assert flag in help_text


@pytest.mark.parametrize("bad", ["--fatal-bots=-1", "--retention-hours=0"])
def test_simulate_rejects_bad_special_counts_and_retention(bad: str) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "downloader.cli", "simulate", "--port", "0", bad],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert len(result.stderr.strip().splitlines()) == 1
    assert result.stderr.startswith("recall-dl simulate: ")


@pytest.mark.parametrize(
    "command_line",
    [["-m", "downloader.cli", "simulate"], ["-m", "downloader.simulator"]],
)
def test_simulate_on_a_busy_port_is_one_clear_line(command_line: list[str]) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = subprocess.run(
            [sys.executable, *command_line, "--port", str(port), "--bots", "1"],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert f"port {port} is already in use" in lines[0]
    assert "--port 0" in lines[0]
    assert "Traceback" not in result.stderr
    assert result.stdout == ""  # nothing announced: nothing is running
