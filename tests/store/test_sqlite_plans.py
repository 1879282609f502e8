"""The hot queries of the SQLite store use an index: none walks the whole jobs table."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from downloader.store import open_store
from downloader.store.sqlite import Q

HOT: dict[str, dict[str, object]] = {
    "claim_candidates": {"kind": "download_part", "now": 1.0, "limit": 3},
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
