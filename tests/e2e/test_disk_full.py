"""`recall-dl fetch` on a disk that fills up: it waits for space, fails nothing, then finishes."""

from __future__ import annotations

import json
import sqlite3
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from downloader.simulator import SimulatorConfig
from tests.e2e.cli import Workspace
from tests.e2e.test_fetch import assert_bot_complete
from tests.e2e.test_restart import wait_for

PART = 512 * 1024
BIG = SimulatorConfig(
    bots=1, participants_per_bot=2, parts_per_participant=2, part_size=PART, seed=4, time_scale=0
)


@pytest.fixture
def small_out(ws: Workspace) -> Iterator[Path]:
    """The output folder on a 1 MiB tmpfs (this machine kind runs tests as root)."""
    ws.out.mkdir(parents=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(ws.out)], check=True)
    try:
        yield ws.out
    finally:
        subprocess.run(["umount", "-l", str(ws.out)], check=False)


def disk_full_waits(ws: Workspace) -> int:
    try:
        with sqlite3.connect(ws.state) as db:
            rows = db.execute("SELECT payload FROM jobs WHERE kind = 'download_part'").fetchall()
    except sqlite3.OperationalError:  # not created yet
        return 0
    return sum(int(json.loads(p).get("disk_full_waits") or 0) for (p,) in rows)


@pytest.mark.parametrize("sim_config", [BIG])
def test_a_full_disk_waits_without_spending_attempts(ws: Workspace, small_out: Path) -> None:
    # One attempt only: a disk-full that counted as an attempt would fail the part at once.
    proc = ws.popen(
        "fetch", *ws.sim.bot_ids, RECALL_DL_MAX_ATTEMPTS="1", RECALL_DL_CHECKPOINT_BYTES="64K"
    )
    wait_for(lambda: disk_full_waits(ws) >= 2, proc, "waiting for disk space twice")
    partials = [p for p in small_out.rglob("*.part") if p.stat().st_size > 0]
    assert partials  # kept for the resume, not deleted

    subprocess.run(["mount", "-o", "remount,size=16m", str(small_out)], check=True)
    _, stderr = proc.communicate(timeout=90)
    assert proc.returncode == 0, stderr[-3000:]
    assert "job_waiting_for_disk_space" in stderr
    assert str(small_out) in stderr  # the log says where the disk is full
    assert_bot_complete(ws, ws.sim.bot_ids[0])
    assert ws.sim.stats()["media"]["range_requests"] >= 1  # resumed, not restarted
