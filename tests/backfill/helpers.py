"""What the simulated workspace holds, computed from the simulator's world (read-only)."""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from downloader.simulator import SimulatorThread


@dataclass(frozen=True)
class Expected:
    bot_id: str
    recording_id: str
    vs_created: datetime
    parts: int


def recordings(sim: SimulatorThread) -> list[Expected]:
    world = sim.sim.state.world
    found = []
    for index in range(world.bot_count):
        bot = world.bot(index)
        assert bot is not None
        for rec in world.recordings(bot):
            if rec.vs_created_us is None:
                continue
            created = datetime.fromtimestamp(rec.vs_created_us / 1e6, UTC)
            found.append(Expected(bot.id, rec.id, created, len(world.parts(rec))))
    return sorted(found, key=lambda e: e.vs_created)


def downloaded(out: Path) -> set[tuple[str, str]]:
    """(bot id, recording id) of every finalized recording folder."""
    return {(p.parent.parent.name, p.parent.name) for p in out.glob("*/*/manifest.json")}


def iso(value: datetime) -> str:
    return value.isoformat().replace("+00:00", "Z")


def cursors(state: Path) -> dict[str, str]:
    if not state.exists():
        return {}
    with sqlite3.connect(state) as conn:
        try:
            return dict(conn.execute("SELECT name, value FROM cursors").fetchall())
        except sqlite3.OperationalError:  # not created yet
            return {}


def job_count(state: Path) -> int:
    with sqlite3.connect(state) as conn:
        return int(conn.execute("SELECT count(*) FROM jobs").fetchone()[0])


def list_requests(sim: SimulatorThread, status: str = "done") -> int:
    return sum(
        1
        for entry in sim.request_log()
        if entry.get("route") == "video_separate_list"
        and f"status_code={status}" in entry.get("query", "")
    )


def done_parts(state: Path) -> set[str]:
    with sqlite3.connect(state) as conn:
        rows = conn.execute(
            "SELECT key FROM jobs WHERE kind = 'download_part' AND state = 'done'"
        ).fetchall()
    return {str(row[0]) for row in rows}
