"""SIGKILL `recall-dl fetch` at awkward moments; the next run must finish with identical files."""

from __future__ import annotations

import random
import signal
import sqlite3
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from downloader.simulator import SimulatorConfig
from tests.e2e.cli import Workspace, files_under
from tests.e2e.test_fetch import assert_bot_complete

PART = 768 * 1024
CHECKPOINT = 64 * 1024
SLOW = SimulatorConfig(
    bots=2,
    participants_per_bot=2,
    parts_per_participant=1,
    part_size=PART,
    seed=3,
    time_scale=0,
    throttle_bytes_per_sec=1_500_000,
)


def wait_for(condition: Callable[[], bool], proc: subprocess.Popen[str], what: str) -> None:
    """Poll a condition while the command runs; the poll interval is a wait on the process."""
    while not condition():
        try:
            proc.wait(timeout=0.02)
        except subprocess.TimeoutExpired:
            continue
        stderr = proc.stderr.read() if proc.stderr else ""
        pytest.fail(f"command exited ({proc.returncode}) before {what}: {stderr[-2000:]}")


def kill(proc: subprocess.Popen[str]) -> None:
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=30)


def final_files(ws: Workspace) -> set[Path]:
    return {p for p in files_under(ws.out) if p.suffix == ".mp4"} if ws.out.exists() else set()


@pytest.mark.parametrize("sim_config", [SLOW])
def test_sigkill_mid_body_after_rename_and_anywhere(ws: Workspace) -> None:
    env = {"RECALL_DL_CHECKPOINT_BYTES": str(CHECKPOINT), "RECALL_DL_CONCURRENCY": "2"}
    rng = random.Random(7)
    bots = ws.sim.bot_ids
    total = sum(len(ws.sim.parts(r)) for b in bots for r in ws.sim.recording_ids(b)) * PART

    def served() -> int:
        return int(ws.sim.stats()["media"]["bytes_served_total"])

    # 1. mid-body, at a random offset into the first parts
    proc = ws.popen("fetch", *bots, **env)
    threshold = rng.randrange(PART // 4, PART)
    wait_for(lambda: served() >= threshold, proc, "mid-body")
    kill(proc)

    # 2. right after a rename: the first final file appears
    before = final_files(ws)
    proc = ws.popen("fetch", *bots, **env)
    wait_for(lambda: len(final_files(ws)) > len(before), proc, "a rename")
    kill(proc)

    # 3. at a random moment later on (often inside a checkpoint commit)
    proc = ws.popen("fetch", *bots, **env)
    threshold = served() + rng.randrange(CHECKPOINT, 3 * CHECKPOINT)
    wait_for(lambda: served() >= threshold, proc, "a later moment")
    kill(proc)

    completed_before_last_run = {p.name for p in final_files(ws)}
    per_part_before = dict(ws.sim.stats()["media"]["bytes_served_per_part"])

    result = ws.run(
        "fetch", *bots, RECALL_DL_CHECKPOINT_BYTES=str(CHECKPOINT), RECALL_DL_CONCURRENCY="2"
    )
    assert result.returncode == 0, result.stderr[-3000:]
    for bot_id in bots:
        assert_bot_complete(ws, bot_id)
    assert not [p for p in files_under(ws.out) if p.name.endswith(".part")]

    per_part_after = ws.sim.stats()["media"]["bytes_served_per_part"]
    for name in completed_before_last_run:
        part_id = name.rsplit("-", 5)[-5:]  # uuid = last five dash-separated groups
        pid = "-".join(part_id).removesuffix(".mp4")
        assert per_part_after.get(pid) == per_part_before.get(pid), (
            f"{pid} downloaded again after it was complete"
        )
    # Three kills cost at most one checkpoint interval (plus in-flight slack) per interrupted part.
    waste = served() - total
    assert waste <= 3 * 2 * (CHECKPOINT + 256 * 1024), waste

    with sqlite3.connect(ws.state) as db:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


@pytest.mark.parametrize("sim_config", [SLOW])
def test_ctrl_c_stops_cleanly_and_the_same_command_resumes(ws: Workspace) -> None:
    bots = ws.sim.bot_ids
    proc = ws.popen("fetch", *bots, RECALL_DL_CHECKPOINT_BYTES=str(CHECKPOINT))
    wait_for(lambda: int(ws.sim.stats()["media"]["bytes_served_total"]) >= PART, proc, "progress")
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 130, stderr
    assert "run the same command" in stderr
    resumed = ws.run("fetch", *bots)
    assert resumed.returncode == 0, resumed.stderr
    for bot_id in bots:
        assert_bot_complete(ws, bot_id)
    assert ws.sim.stats()["media"]["range_requests"] >= 1


@pytest.mark.parametrize("sim_config", [SLOW])
def test_a_part_whose_holder_keeps_dying_is_failed_not_run_forever(ws: Workspace) -> None:
    bots = ws.sim.bot_ids[:1]

    def fetch() -> subprocess.Popen[str]:
        return ws.popen(
            "fetch",
            *bots,
            RECALL_DL_CHECKPOINT_BYTES=str(CHECKPOINT),
            RECALL_DL_MAX_ATTEMPTS="2",
            RECALL_DL_CONCURRENCY="1",
        )

    def served() -> int:
        return int(ws.sim.stats()["media"]["bytes_served_total"])

    for _ in range(2):  # a reclaimed part resumes first: the same part dies twice
        start = served()
        proc = fetch()
        wait_for(lambda: served() >= start + CHECKPOINT, proc, "mid-body")  # noqa: B023
        kill(proc)

    last = fetch()
    stdout, stderr = last.communicate(timeout=90)
    assert last.returncode == 1, stderr[-3000:]
    assert "gave up after 2 attempts" in stdout + stderr
    with sqlite3.connect(ws.state) as db:
        (failed,) = db.execute(
            "SELECT count(*) FROM jobs WHERE kind = 'download_part' AND state = 'failed'"
        ).fetchone()
    assert failed == 1


def test_a_finalize_left_waiting_by_a_crash_is_woken(ws: Workspace) -> None:
    bot_id = ws.sim.bot_ids[0]
    assert ws.run("fetch", bot_id).returncode == 0
    recording_id = ws.sim.recording_ids(bot_id)[0]
    sidecar = ws.out / bot_id / recording_id / "manifest.json"
    # The state a crash between the last part's commit and its wake-up leaves: every part
    # done, the finalize job still waiting for its safety-net delay, no sidecar yet.
    sidecar.unlink()
    with sqlite3.connect(ws.state) as db:
        db.execute(
            "UPDATE jobs SET state = 'pending', due = 0, run_after = unixepoch() + 3600, "
            "result = '{}' WHERE kind = 'finalize_recording' AND key = ?",
            (recording_id,),
        )
    result = ws.run("fetch", bot_id, timeout=60)
    assert result.returncode == 0, result.stderr[-3000:]
    assert_bot_complete(ws, bot_id)
