"""`recall-dl backfill` end to end: the real command as a subprocess against the simulator."""

from __future__ import annotations

import json
import signal
import subprocess
from collections.abc import Callable

import pytest

from downloader.simulator import BotSpec, ParticipantSpec, SimulatorConfig
from tests.backfill.helpers import (
    cursors,
    done_parts,
    downloaded,
    iso,
    job_count,
    list_requests,
    recordings,
)
from tests.e2e.cli import Workspace

SINCE = "2000-01-01"


def one_participant(**extra: object) -> BotSpec:
    return BotSpec(participants=[ParticipantSpec(id=100, name="Solo", parts=1)], **extra)  # type: ignore[arg-type]


def completed_once(ws: Workspace, parts: set[str] | None = None) -> None:
    """Every part (or each of ``parts``) was served in full exactly once."""
    per_part = ws.sim.stats()["media"]["completed_downloads_per_part"]
    assert per_part
    counts = [per_part[p] for p in parts] if parts is not None else list(per_part.values())
    assert set(counts) == {1}, "a completed part was downloaded again"


def test_window_and_metadata_filter_over_several_pages(ws: Workspace) -> None:
    blue = [ws.sim.add_bot(one_participant(metadata={"team": "blue"})) for _ in range(12)]
    for _ in range(3):
        ws.sim.add_bot(one_participant(metadata={"team": "red"}))
    everything = recordings(ws.sim)  # type: ignore[arg-type]
    inside = everything[5:21]  # 16 recordings: two pages of the video_separate list

    result = ws.run(
        "backfill", "--since", iso(inside[0].vs_created), "--until", iso(inside[-1].vs_created)
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert downloaded(ws.out) == {(e.bot_id, e.recording_id) for e in inside}
    assert "16 recording(s): 16 done, 0 failed" in result.stdout
    for e in inside:
        assert len(ws.sidecar(e.bot_id, e.recording_id)["parts"]) == e.parts
    assert list_requests(ws.sim) == 2  # type: ignore[arg-type]

    # Bot metadata: twelve matching bots are two pages of the bots list.
    result = ws.run("backfill", "--since", SINCE, "--metadata", "team=blue")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "12 recording(s): 12 done" in result.stdout
    blue_recordings = {(e.bot_id, e.recording_id) for e in everything if e.bot_id in blue}
    assert downloaded(ws.out) == {(e.bot_id, e.recording_id) for e in inside} | blue_recordings
    bot_pages = [e for e in ws.sim.request_log() if e.get("route") == "bot_list"]
    assert len(bot_pages) == 2
    assert all("metadata__team=blue" in e["query"] for e in bot_pages)
    completed_once(ws)


EDGE = SimulatorConfig(
    bots=12,
    participants_per_bot=1,
    parts_per_participant=2,
    part_size=2048,
    created_at_spread_days=1,
    time_scale=1.0,
    seed=22,
)


@pytest.mark.parametrize("sim_config", [EDGE])
def test_recording_still_processing_at_the_windows_edge(ws: Workspace) -> None:
    # Its video_separate exists (created a millisecond after the call) but processes for an hour.
    late = ws.sim.add_bot(one_participant(lifecycle=(0, 0.001, 0, 3600, 3600)))
    result = ws.run("backfill", "--since", SINCE)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "12 recording(s): 12 done" in result.stdout
    assert "1 video(s) of this window are still processing" in result.stdout
    assert late not in {bot for bot, _ in downloaded(ws.out)}

    ws.sim.advance_time(2 * 3600)  # processing finishes
    result = ws.run("backfill", "--since", SINCE)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "13 recording(s): 13 done" in result.stdout
    assert "still processing" not in result.stdout
    assert late in {bot for bot, _ in downloaded(ws.out)}
    completed_once(ws)  # the first run's parts were not fetched again


def test_videos_recall_failed_to_produce_are_reported_not_fetched(ws: Workspace) -> None:
    """Nothing to download for them, and not a failure of the backfill, but not silent."""
    ws.sim.add_bot(one_participant(outcome="video_separate_failed"))
    result = ws.run("backfill", "--since", SINCE)
    assert result.returncode == 0, result.stderr[-3000:]
    assert " done, 0 failed;" in result.stdout
    assert "1 video(s) of this window failed at Recall" in result.stdout


SLOW_LISTING = SimulatorConfig(
    bots=120,
    participants_per_bot=1,
    parts_per_participant=1,
    part_size=2048,
    created_at_spread_days=3,
    time_scale=0,
    list_limit_per_min=4,  # per 1-second "minute": four list pages a second
    rate_window_seconds=1.0,
    seed=23,
)
SLOW_ENV = {"RECALL_DL_LIST_RATE_LIMIT": "4", "RECALL_DL_RATE_WINDOW_SECONDS": "1"}


def wait_for(condition: Callable[[], bool], proc: subprocess.Popen[str], what: str) -> None:
    """Poll while the command runs; each poll interval is a wait on the process itself."""
    while not condition():
        try:
            proc.wait(timeout=0.02)
        except subprocess.TimeoutExpired:
            continue
        pytest.fail(f"command exited ({proc.returncode}) before {what}")


def batches(ws: Workspace) -> int:
    values = [v for k, v in cursors(ws.state).items() if k.endswith(":batches")]
    return int(values[0]) if values else 0


@pytest.mark.parametrize("sim_config", [SLOW_LISTING])
def test_interrupted_run_resumes_without_relisting(ws: Workspace) -> None:
    proc = ws.popen("backfill", "--since", SINCE, **SLOW_ENV)
    wait_for(lambda: batches(ws) >= 3, proc, "three pages were queued")
    proc.send_signal(signal.SIGINT)
    _out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err[-3000:]
    assert "run the same command again to resume" in err
    listed_first = list_requests(ws.sim)  # type: ignore[arg-type]
    assert 3 <= listed_first < 12
    finished_first = done_parts(ws.state)

    result = ws.run("backfill", "--since", SINCE, timeout=90, **SLOW_ENV)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "120 recording(s): 120 done, 0 failed" in result.stdout
    assert len(downloaded(ws.out)) == 120
    # Twelve pages in all; the page in flight at the interruption may be read twice.
    assert list_requests(ws.sim) <= 12 + 1  # type: ignore[arg-type]
    started = [
        json.loads(line) for line in result.stderr.splitlines() if '"backfill_started"' in line
    ]
    assert started[0]["queued"] >= 30
    # Parts done before the interruption are not fetched again. (A body fully received but
    # not yet committed when Ctrl-C arrived is not done, and is fetched again.)
    completed_once(ws, finished_first)


def test_dry_run_lists_and_queues_nothing(ws: Workspace) -> None:
    result = ws.run("backfill", "--since", SINCE, "--dry-run")
    assert result.returncode == 0, result.stderr[-3000:]
    lines = result.stdout.strip().splitlines()
    expected = recordings(ws.sim)  # type: ignore[arg-type]
    assert len(lines) == len(expected) + 1
    for e in expected:
        assert any(line.startswith(f"{e.bot_id}/{e.recording_id}") for line in lines)
    assert all("participants 2  parts 3" in line for line in lines[:-1])  # host screenshares
    parts = sum(e.parts for e in expected)
    assert f"25 recording(s), 50 participant(s), {parts} part(s)" in lines[-1]
    assert "nothing was queued" in lines[-1]
    assert job_count(ws.state) == 0
    assert not any(k.startswith("backfill:") for k in cursors(ws.state))
    assert not ws.out.exists() or not any(ws.out.rglob("*.mp4"))
    assert ws.sim.stats()["media"]["bytes_served_total"] == 0


# A few hundred recordings at the documented limits (60 list / 300 retrieve per minute) with
# a 3-second simulated minute, so the test takes seconds: the client must never be refused.
POLITE = SimulatorConfig(
    bots=250,
    participants_per_bot=1,
    parts_per_participant=1,
    part_size=1024,
    created_at_spread_days=30,
    time_scale=0,
    list_limit_per_min=60,
    retrieve_limit_per_min=300,
    rate_window_seconds=3.0,
    seed=24,
)


@pytest.mark.slow
@pytest.mark.parametrize("sim_config", [POLITE])
def test_few_hundred_recordings_without_a_single_429(ws: Workspace) -> None:
    result = ws.run("backfill", "--since", SINCE, timeout=120, RECALL_DL_RATE_WINDOW_SECONDS="3")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "250 recording(s): 250 done, 0 failed" in result.stdout
    stats = ws.sim.stats()
    assert sum(stats["served_429"].values()) == 0
    assert stats["violations"]["over_limit"] == 0
    assert stats["violations"]["early_retry"] == 0
    assert stats["requests"]["video_separate_list"] >= 25


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--since", "last tuesday"], "--since 'last tuesday' is not a date"),
        (["--since", "2025-02-01", "--until", "2025-01-01"], "is after --until"),
        (["--since", "2999-01-01"], "--since 2999-01-01T00:00:00Z is in the future"),
        (["--since", "2025-01-01", "--until", "2025-13-01"], "--until '2025-13-01' is not a date"),
        (["--since", "2025-01-01", "--metadata", "novalue"], "must look like KEY=VALUE"),
    ],
)
def test_bad_input_is_one_clear_line(ws: Workspace, args: list[str], message: str) -> None:
    result = ws.run("backfill", *args)
    assert result.returncode == 2
    assert message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
