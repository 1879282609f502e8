"""The hot queries of the SQLite store use an index: none walks the whole jobs table."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from downloader.lifecycle import JobKind
from downloader.store import NewJob, open_store
from downloader.store.sqlite import Q
from downloader.store.testing import FakeClock

HOT: dict[str, dict[str, object]] = {
    "claim_candidates": {"kind": "download_part", "now": 1.0, "limit": 3},
    "promote_due": {"now": 1.0},
    "any_promotable": {"now": 1.0},
    "claim_take": {"seq": 1, "token": "t", "worker": "w", "lease_until": 2.0, "now": 1.0},
    "heartbeat": {"id": "x", "token": "t", "now": 1.0, "lease_until": 2.0},
    "finish": {"id": "x", "token": "t", "now": 1.0, "result": "{}"},
    "counts_for_bots": {"bot_ids": '["b1"]'},
    "reclaim_expired": {"now": 1.0},
    "requeue_failed": {"now": 1.0},
    "requeue_ids": {"now": 1.0, "ids": '["x"]'},
    "workers": {"since": 1.0},
}
LISTINGS = ["parent = 'r'", "bot_id = 'b'", "state = 'failed'", "kind = 'poll_bot'"]


async def create(path: Path) -> None:
    await (await open_store(str(path))).close()


@pytest.fixture
def conn(tmp_path: Path) -> Iterator[sqlite3.Connection]:
    path = tmp_path / "jobs.db"
    asyncio.run(create(path))
    connection = sqlite3.connect(path)
    yield connection
    connection.close()


def plan(conn: sqlite3.Connection, sql: str, params: dict[str, object]) -> list[str]:
    return [row[3] for row in conn.execute("EXPLAIN QUERY PLAN " + sql, params)]


@pytest.mark.parametrize("name", sorted(HOT))
def test_hot_query_uses_an_index(conn: sqlite3.Connection, name: str) -> None:
    steps = plan(conn, Q[name], HOT[name])
    assert not [s for s in steps if s.startswith("SCAN") and " jobs" in f" {s}"], steps


@pytest.mark.parametrize("where", LISTINGS)
def test_listing_uses_an_index(conn: sqlite3.Connection, where: str) -> None:
    steps = plan(conn, f"{Q['list_jobs']} WHERE {where} ORDER BY seq", {})
    assert any("USING INDEX" in s for s in steps), steps


def vm_steps(conn: sqlite3.Connection, sql: str, params: dict[str, object]) -> int:
    """How much work SQLite does for one statement, counted in VM instructions (exact)."""
    steps = 0

    def count() -> int:
        nonlocal steps
        steps += 1
        return 0

    conn.set_progress_handler(count, 1)
    try:
        conn.execute(sql, params).fetchall()
    finally:
        conn.set_progress_handler(None, 1)
    return steps


async def fill(path: Path, clock: FakeClock, parked: int) -> None:
    store = await open_store(str(path), clock=clock)
    try:
        later = clock() + 3600
        await store.enqueue(
            [
                NewJob(JobKind.FINALIZE_RECORDING, f"r{i}", priority=i, run_after=later)
                for i in range(parked)
            ]
            + [NewJob(JobKind.FINALIZE_RECORDING, "due-now", priority=-1)]
        )
        await store.claim("w", kinds=[JobKind.POLL_BOT], lease_seconds=1)  # promotes: none
    finally:
        await store.close()


def test_claim_cost_does_not_grow_with_parked_jobs(tmp_path: Path, clock: FakeClock) -> None:
    """Thousands of jobs parked for later, at higher priorities, cost a claim nothing."""
    costs = []
    for parked in (10, 10_000):
        path = tmp_path / f"{parked}.db"
        asyncio.run(fill(path, clock, parked))
        with sqlite3.connect(path) as conn:
            params = {"kind": "finalize_recording", "now": clock(), "limit": 1}
            assert conn.execute(Q["claim_candidates"], params).fetchone() is not None
            costs.append(vm_steps(conn, Q["claim_candidates"], params))
            costs.append(vm_steps(conn, Q["any_promotable"], {"now": clock()}))
        conn.close()
    small_candidates, small_promotable, big_candidates, big_promotable = costs
    assert big_candidates <= small_candidates * 2, costs
    assert big_promotable <= small_promotable * 2, costs
