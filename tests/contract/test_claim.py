"""Claim: only due PENDING jobs, best first, each to exactly one worker."""

from __future__ import annotations

from collections.abc import Collection

import pytest

from downloader.lifecycle import API_KINDS, JobKind, JobState
from downloader.store import JobStore, NewJob
from downloader.store.testing import FakeClock

pytestmark = pytest.mark.anyio

PART = JobKind.DOWNLOAD_PART


async def keys(
    store: JobStore, *, limit: int = 1, kinds: Collection[JobKind] | None = None
) -> list[str]:
    leases = await store.claim("w", kinds=kinds, limit=limit, lease_seconds=60)
    return [lease.job.key for lease in leases]


async def test_claim_takes_a_due_job_and_leases_it(store: JobStore, clock: FakeClock) -> None:
    await store.enqueue([NewJob(PART, "p1")])

    (lease,) = await store.claim("host:1", lease_seconds=30)

    assert lease.job.key == "p1"
    assert lease.job.state == JobState.RUNNING
    assert lease.job.worker == "host:1"
    assert lease.job.lease_until == clock() + 30
    assert lease.token
    stored = await store.get(lease.job.id)
    assert stored == lease.job


async def test_nothing_to_claim(store: JobStore) -> None:
    assert await store.claim("w", lease_seconds=30) == []


async def test_a_claimed_job_is_not_claimed_again(store: JobStore) -> None:
    await store.enqueue([NewJob(PART, "p1")])
    assert await keys(store) == ["p1"]
    assert await keys(store) == []


async def test_jobs_are_not_claimed_before_run_after(store: JobStore, clock: FakeClock) -> None:
    await store.enqueue([NewJob(PART, "later", run_after=clock() + 10)])
    assert await keys(store) == []
    clock.advance(9.5)
    assert await keys(store) == []
    clock.advance(0.5)  # due exactly at run_after
    assert await keys(store) == ["later"]


async def test_order_is_priority_then_run_after_then_creation(
    store: JobStore, clock: FakeClock
) -> None:
    now = clock()
    await store.enqueue(
        [
            NewJob(PART, "low-old", priority=0, run_after=now - 50),
            NewJob(PART, "high-new", priority=5, run_after=now - 1),
            NewJob(PART, "high-old", priority=5, run_after=now - 20),
            NewJob(PART, "low-first", priority=0),
            NewJob(PART, "low-second", priority=0),
            NewJob(JobKind.POLL_BOT, "mid", priority=2),
        ]
    )
    assert await keys(store, limit=10) == [
        "high-old",
        "high-new",
        "mid",
        "low-old",
        "low-first",
        "low-second",
    ]


async def test_limit_bounds_one_claim(store: JobStore) -> None:
    await store.enqueue([NewJob(PART, f"p{i}") for i in range(5)])
    assert await keys(store, limit=2) == ["p0", "p1"]
    assert await keys(store, limit=0) == []
    assert await keys(store, limit=10) == ["p2", "p3", "p4"]


async def test_kinds_filter(store: JobStore) -> None:
    await store.enqueue(
        [
            NewJob(PART, "part", priority=9),
            NewJob(JobKind.POLL_BOT, "bot"),
            NewJob(JobKind.FETCH_MANIFEST, "manifest", priority=1),
        ]
    )
    assert await keys(store, kinds=API_KINDS, limit=5) == ["manifest", "bot"]
    assert await keys(store, kinds=[JobKind.POLL_BOT]) == []
    assert await keys(store, kinds=[]) == []
    assert await keys(store, kinds=[PART]) == ["part"]


async def test_tokens_differ_per_job_and_per_attempt(store: JobStore) -> None:
    await store.enqueue([NewJob(PART, "a"), NewJob(PART, "b")])
    first_a, first_b = await store.claim("w", limit=2, lease_seconds=30)
    await store.release(first_a)
    (second_a,) = await store.claim("w", lease_seconds=30)
    assert len({first_a.token, first_b.token, second_a.token}) == 3


async def test_invalid_arguments_are_refused(store: JobStore) -> None:
    with pytest.raises(ValueError, match="lease_seconds"):
        await store.claim("w", lease_seconds=0)
    with pytest.raises(ValueError, match="limit"):
        await store.claim("w", limit=-1, lease_seconds=10)


async def test_a_parked_job_joins_the_claim_order_when_due(
    store: JobStore, clock: FakeClock
) -> None:
    await store.enqueue(
        [
            NewJob(PART, "urgent-later", priority=9, run_after=clock() + 30),
            NewJob(PART, "low-now"),
        ]
    )
    assert await keys(store) == ["low-now"]
    await store.enqueue([NewJob(PART, "mid-now", priority=5), NewJob(PART, "low-2")])
    clock.advance(30)
    assert await keys(store, limit=5) == ["urgent-later", "mid-now", "low-2"]


async def test_waiting_jobs_come_back_in_order(store: JobStore, clock: FakeClock) -> None:
    await store.enqueue([NewJob(PART, "a", priority=1), NewJob(PART, "b", priority=2)])
    b, a = await store.claim("w", limit=2, lease_seconds=60)
    await store.retry_later(a, clock() + 10, "503")
    await store.reschedule(b, clock() + 20)
    clock.advance(10)
    assert await keys(store, limit=5) == ["a"]
    clock.advance(10)
    assert await keys(store, limit=5) == ["b"]
