"""Reads and the small tables: listing, counts, webhook dedup, cursors, workers."""

from __future__ import annotations

import asyncio

import pytest

from downloader.lifecycle import JobKind, JobState
from downloader.store import JobStore, NewJob, WorkerInfo
from downloader.store.testing import FakeClock

pytestmark = pytest.mark.anyio

PART = JobKind.DOWNLOAD_PART
POLL = JobKind.POLL_BOT


@pytest.fixture
async def filled(store: JobStore) -> JobStore:
    """Two bots; bot b1 has a recording r1 with two parts, one of them done."""
    await store.enqueue(
        [
            NewJob(POLL, "b1", bot_id="b1"),
            NewJob(POLL, "b2", bot_id="b2"),
            NewJob(PART, "p1", bot_id="b1", parent="r1"),
            NewJob(PART, "p2", bot_id="b1", parent="r1"),
            NewJob(JobKind.FINALIZE_RECORDING, "r1", bot_id="b1", parent="r1"),
        ]
    )
    (lease,) = await store.claim("w", kinds=[PART], lease_seconds=30)
    await store.finish(lease, {})
    return store


async def keys(store: JobStore, **filters: object) -> list[str]:
    jobs = await store.list_jobs(**filters)  # type: ignore[arg-type]
    return [f"{j.kind.value}:{j.key}" for j in jobs]


async def test_list_jobs_in_creation_order(filled: JobStore) -> None:
    assert await keys(filled) == [
        "poll_bot:b1",
        "poll_bot:b2",
        "download_part:p1",
        "download_part:p2",
        "finalize_recording:r1",
    ]
    assert await keys(filled, limit=2) == ["poll_bot:b1", "poll_bot:b2"]


async def test_list_jobs_filters_combine(filled: JobStore) -> None:
    assert await keys(filled, kind=PART) == ["download_part:p1", "download_part:p2"]
    assert await keys(filled, state=JobState.DONE) == ["download_part:p1"]
    assert await keys(filled, kind=PART, state=JobState.PENDING) == ["download_part:p2"]
    assert await keys(filled, parent="r1", kind=JobKind.FINALIZE_RECORDING) == [
        "finalize_recording:r1"
    ]
    assert await keys(filled, bot_id="b2") == ["poll_bot:b2"]
    assert await keys(filled, bot_id="b2", kind=PART) == []
    assert await keys(filled, state=JobState.FAILED) == []


async def test_counts_per_kind_and_state(filled: JobStore) -> None:
    assert await filled.counts() == {
        (POLL, JobState.PENDING): 2,
        (PART, JobState.DONE): 1,
        (PART, JobState.PENDING): 1,
        (JobKind.FINALIZE_RECORDING, JobState.PENDING): 1,
    }
    assert await filled.counts(bot_ids=["b2"]) == {(POLL, JobState.PENDING): 1}
    assert await filled.counts(bot_ids=["b2", "b1", "nobody"]) == await filled.counts()
    assert await filled.counts(bot_ids=[]) == {}


async def test_get_unknown_job(store: JobStore) -> None:
    assert await store.get("download_part:nope") is None


async def test_remember_delivery_spots_duplicates(store: JobStore) -> None:
    assert await store.remember_delivery("msg_1")
    assert not await store.remember_delivery("msg_1")
    assert await store.remember_delivery("msg_2")


async def test_cursors(store: JobStore) -> None:
    assert await store.get_cursor("sweep") is None
    await store.set_cursor("sweep", "2024-01-01T00:00:00Z")
    await store.set_cursor("other", "x")
    await store.set_cursor("sweep", "2024-02-01T00:00:00Z")
    assert await store.get_cursor("sweep") == "2024-02-01T00:00:00Z"
    assert await store.get_cursor("other") == "x"


async def test_swap_cursor_is_a_compare_and_set(store: JobStore) -> None:
    assert await store.swap_cursor("lease", None, "a")  # absent: set
    assert not await store.swap_cursor("lease", None, "b")  # someone set it meanwhile
    assert not await store.swap_cursor("lease", "stale", "b")
    assert await store.get_cursor("lease") == "a"
    assert await store.swap_cursor("lease", "a", "c")
    assert await store.get_cursor("lease") == "c"


async def test_of_concurrent_swaps_from_one_value_exactly_one_wins(store: JobStore) -> None:
    await store.set_cursor("lease", "v0")
    results = await asyncio.gather(*(store.swap_cursor("lease", "v0", f"h{i}") for i in range(8)))
    assert sum(results) == 1
    winner = results.index(True)
    assert await store.get_cursor("lease") == f"h{winner}"


async def test_workers_with_their_running_jobs(store: JobStore, clock: FakeClock) -> None:
    await store.enqueue([NewJob(PART, f"p{i}") for i in range(3)])
    first, second = await store.claim("host-a:1", limit=2, lease_seconds=30)
    start = clock()
    await store.claim("host-b:7", lease_seconds=30)
    assert await store.workers() == [
        WorkerInfo("host-a:1", start, 2),
        WorkerInfo("host-b:7", start, 1),
    ]

    clock.advance(10)
    assert await store.heartbeat(first, 30)
    await store.finish(second, {})
    assert await store.workers() == [
        WorkerInfo("host-a:1", clock(), 1),
        WorkerInfo("host-b:7", start, 1),
    ]


async def test_long_gone_idle_workers_are_not_listed(store: JobStore, clock: FakeClock) -> None:
    await store.enqueue([NewJob(PART, "p1")])
    (lease,) = await store.claim("old:1", lease_seconds=30)
    await store.finish(lease, {})
    clock.advance(24 * 3600)
    assert await store.workers() == []
