"""Requeue: an operator's retry of failed jobs, and verify --repair's redo of done ones."""

from __future__ import annotations

import pytest

from downloader.lifecycle import JobKind, JobState, job_id
from downloader.store import JobStore, Lease, LeaseLost, NewJob
from downloader.store.testing import FakeClock

pytestmark = pytest.mark.anyio

PART = JobKind.DOWNLOAD_PART


async def states(store: JobStore) -> dict[str, JobState]:
    return {job.key: job.state for job in await store.list_jobs()}


@pytest.fixture
async def leases(store: JobStore) -> dict[str, Lease]:
    """Four jobs: failed-1, failed-2, done, running; plus one pending."""
    keys = ["failed-1", "failed-2", "done", "running"]
    await store.enqueue([NewJob(PART, k) for k in [*keys, "pending"]])
    claimed = await store.claim("w", limit=4, lease_seconds=30)
    by_key = {le.job.key: le for le in claimed}
    await store.retry_later(by_key["failed-1"], 0.0, "first")
    (again,) = await store.claim("w", lease_seconds=30, limit=1)
    assert again.job.key == "failed-1"
    await store.fail(again, "gone")
    await store.fail(by_key["failed-2"], "gone")
    await store.finish(by_key["done"], {"bytes": 1})
    by_key["failed-1"] = again
    return by_key


async def test_requeue_all_failed(
    store: JobStore, clock: FakeClock, leases: dict[str, Lease]
) -> None:
    clock.advance(10)
    assert await store.requeue() == 2

    assert await states(store) == {
        "failed-1": JobState.PENDING,
        "failed-2": JobState.PENDING,
        "done": JobState.DONE,
        "running": JobState.RUNNING,
        "pending": JobState.PENDING,
    }
    job = await store.get(job_id(PART, "failed-1"))
    assert job is not None
    assert (job.attempts, job.run_after) == (0, clock())
    assert await store.requeue() == 0


async def test_requeue_named_jobs_includes_done_ones(
    store: JobStore, leases: dict[str, Lease]
) -> None:
    named = [job_id(PART, k) for k in ["failed-2", "done", "running", "pending", "unknown"]]
    assert await store.requeue(named) == 2

    assert await states(store) == {
        "failed-1": JobState.FAILED,
        "failed-2": JobState.PENDING,
        "done": JobState.PENDING,
        "running": JobState.RUNNING,  # a running or pending job is not requeued
        "pending": JobState.PENDING,
    }
    await store.finish(leases["running"], {})  # its lease is untouched


async def test_requeue_nothing(store: JobStore, leases: dict[str, Lease]) -> None:
    assert await store.requeue([]) == 0


async def test_the_old_lease_stays_dead_after_requeue(
    store: JobStore, leases: dict[str, Lease]
) -> None:
    await store.requeue([job_id(PART, "done")])
    (fresh,) = await store.claim("w2", kinds=[PART], lease_seconds=30, limit=1)
    if fresh.job.key != "done":  # "pending" may come first; take until we hold "done"
        (fresh,) = await store.claim("w2", kinds=[PART], lease_seconds=30, limit=1)
    assert fresh.job.key == "done"
    with pytest.raises(LeaseLost):
        await store.finish(leases["done"], {"stale": True})
    await store.finish(fresh, {"bytes": 2})
