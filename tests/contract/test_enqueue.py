"""Enqueue: idempotent per job id, atomic per batch, and the three conflict modes."""

from __future__ import annotations

import pytest

from downloader.lifecycle import JobKind, JobState, job_id
from downloader.store import JobStore, Json, NewJob, OnConflict
from downloader.store.testing import FakeClock

pytestmark = pytest.mark.anyio

PART = JobKind.DOWNLOAD_PART


def part(key: str, payload: Json | None = None, run_after: float = 0.0) -> NewJob:
    return NewJob(PART, key, payload=payload or {}, run_after=run_after)


async def test_new_job_is_pending_due_now_with_its_fields(
    store: JobStore, clock: FakeClock
) -> None:
    new = NewJob(PART, "p1", payload={"url": "u1"}, bot_id="b1", parent="r1", priority=3)
    assert await store.enqueue([new]) == 1

    job = await store.get(job_id(PART, "p1"))
    assert job is not None
    assert (job.kind, job.key, job.state) == (PART, "p1", JobState.PENDING)
    assert (job.payload, job.progress, job.result) == ({"url": "u1"}, {}, {})
    assert (job.bot_id, job.parent, job.priority, job.attempts) == ("b1", "r1", 3, 0)
    assert job.run_after == job.created_at == job.updated_at == clock()
    assert (job.worker, job.lease_until, job.last_error) == (None, None, None)


async def test_enqueue_is_idempotent_per_job_id(store: JobStore) -> None:
    assert await store.enqueue([part("p1", payload={"v": 1})]) == 1
    assert await store.enqueue([part("p1", payload={"v": 2}), part("p2")]) == 1

    jobs = await store.list_jobs()
    assert [j.key for j in jobs] == ["p1", "p2"]
    assert jobs[0].payload == {"v": 1}  # IGNORE leaves the existing job as it was


async def test_same_key_of_different_kinds_are_different_jobs(store: JobStore) -> None:
    jobs = [NewJob(JobKind.RESOLVE_RECORDING, "x"), NewJob(JobKind.FINALIZE_RECORDING, "x")]
    assert await store.enqueue(jobs) == 2


async def test_duplicates_within_one_batch_count_once(store: JobStore) -> None:
    assert await store.enqueue([part("p1"), part("p1"), part("p2")]) == 2


async def test_empty_batch_is_harmless(store: JobStore) -> None:
    assert await store.enqueue([]) == 0


async def test_a_batch_is_all_or_nothing(store: JobStore) -> None:
    unserialisable = part("p3", payload={"x": object()})
    with pytest.raises(TypeError):
        await store.enqueue([part("p1"), part("p2"), unserialisable])
    assert await store.list_jobs() == []


async def test_future_run_after_is_kept(store: JobStore, clock: FakeClock) -> None:
    await store.enqueue([part("p1", run_after=clock() + 60)])
    job = await store.get(job_id(PART, "p1"))
    assert job is not None and job.run_after == clock() + 60


async def test_update_payload_keeps_state_progress_and_lease(
    store: JobStore, clock: FakeClock
) -> None:
    await store.enqueue([part("p1", payload={"url": "old"})])
    (lease,) = await store.claim("w1", lease_seconds=30)
    await store.checkpoint(lease, {"offset": 10})

    added = await store.enqueue([part("p1", payload={"url": "new"})], OnConflict.UPDATE_PAYLOAD)

    assert added == 0
    job = await store.get(lease.job.id)
    assert job is not None
    assert (job.state, job.payload, job.progress) == (
        JobState.RUNNING,
        {"url": "new"},
        {"offset": 10},
    )
    await store.finish(lease, {"bytes": 10})  # the lease survives a payload refresh


async def test_update_payload_does_not_revive_a_failed_job(store: JobStore) -> None:
    await store.enqueue([part("p1")])
    (lease,) = await store.claim("w1", lease_seconds=30)
    await store.fail(lease, "404")

    await store.enqueue([part("p1", payload={"url": "new"})], OnConflict.UPDATE_PAYLOAD)

    job = await store.get(lease.job.id)
    assert job is not None
    assert (job.state, job.payload) == (JobState.FAILED, {"url": "new"})


async def test_rearm_revives_a_failed_job_with_zero_attempts(
    store: JobStore, clock: FakeClock
) -> None:
    await store.enqueue([part("p1")])
    (lease,) = await store.claim("w1", lease_seconds=30)
    await store.fail(lease, "404")
    clock.advance(100)

    await store.enqueue([part("p1", payload={"url": "new"})], OnConflict.REARM)

    job = await store.get(lease.job.id)
    assert job is not None
    assert (job.state, job.attempts, job.payload) == (JobState.PENDING, 0, {"url": "new"})
    assert job.run_after <= clock()
    assert [le.job.id for le in await store.claim("w2", lease_seconds=30)] == [job.id]


async def test_rearm_wakes_a_waiting_job_but_never_delays_one(
    store: JobStore, clock: FakeClock
) -> None:
    await store.enqueue(
        [part("later", run_after=clock() + 600), part("soon", run_after=clock() + 5)]
    )
    assert await store.claim("w1", lease_seconds=30) == []

    await store.enqueue([part("later"), part("soon", run_after=clock() + 300)], OnConflict.REARM)

    woken = await store.claim("w1", limit=2, lease_seconds=30)
    assert [le.job.key for le in woken] == ["later"]
    soon = await store.get(job_id(PART, "soon"))
    assert soon is not None and soon.run_after == clock() + 5
    clock.advance(5)
    assert [le.job.key for le in await store.claim("w1", lease_seconds=30)] == ["soon"]


async def test_rearm_leaves_done_and_running_jobs_in_their_state(store: JobStore) -> None:
    await store.enqueue([part("done"), part("running")])
    first, second = await store.claim("w1", limit=2, lease_seconds=30)
    await store.finish(first, {})

    await store.enqueue(
        [part("done", payload={"v": 2}), part("running", payload={"v": 2})], OnConflict.REARM
    )

    done = await store.get(first.job.id)
    running = await store.get(second.job.id)
    assert done is not None and running is not None
    assert (done.state, done.payload) == (JobState.DONE, {"v": 2})
    assert (running.state, running.payload) == (JobState.RUNNING, {"v": 2})
    await store.finish(second, {})
