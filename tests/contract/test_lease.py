"""Leases: heartbeats extend them, expiry hands the job on, and a stale holder can write nothing."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import pytest

from downloader.lifecycle import JobKind, JobState
from downloader.store import IllegalTransition, Job, JobStore, Lease, LeaseLost, NewJob
from downloader.store.testing import FakeClock

pytestmark = pytest.mark.anyio

LEASE = 30.0
Write = Callable[[JobStore, Lease], Awaitable[None]]

# Every write a worker can make about its job, each as (name, call).
WRITES: list[tuple[str, Write]] = [
    ("checkpoint", lambda s, le: s.checkpoint(le, {"offset": 1})),
    ("finish", lambda s, le: s.finish(le, {"bytes": 1})),
    ("reschedule", lambda s, le: s.reschedule(le, 0.0, payload={"zombie": True})),
    ("retry_later", lambda s, le: s.retry_later(le, 0.0, "zombie")),
    ("fail", lambda s, le: s.fail(le, "zombie")),
    ("release", lambda s, le: s.release(le)),
]
WRITE_IDS = [name for name, _ in WRITES]
WRITE_CALLS = [call for _, call in WRITES]


async def claim_one(store: JobStore, worker: str = "w1") -> Lease:
    (lease,) = await store.claim(worker, lease_seconds=LEASE)
    return lease


async def current(store: JobStore, lease: Lease) -> Job:
    job = await store.get(lease.job.id)
    assert job is not None
    return job


@pytest.fixture
async def lease(store: JobStore) -> Lease:
    await store.enqueue([NewJob(JobKind.DOWNLOAD_PART, "p1", payload={"url": "u"})])
    return await claim_one(store)


async def test_heartbeat_extends_the_lease(store: JobStore, clock: FakeClock, lease: Lease) -> None:
    clock.advance(LEASE - 1)
    assert await store.heartbeat(lease, LEASE)
    clock.advance(LEASE - 1)  # past the first expiry, within the extended one

    assert await store.reclaim_expired() == 0
    job = await current(store, lease)
    assert (job.state, job.lease_until) == (JobState.RUNNING, clock() + 1)
    await store.finish(lease, {})


async def test_expired_lease_is_reclaimed_with_one_attempt(
    store: JobStore, clock: FakeClock, lease: Lease
) -> None:
    clock.advance(LEASE)
    assert await store.reclaim_expired() == 0  # the lease holds up to and including lease_until
    clock.advance(0.001)

    assert await store.reclaim_expired() == 1

    job = await current(store, lease)
    assert (job.state, job.attempts, job.worker, job.lease_until) == (
        JobState.PENDING,
        1,
        None,
        None,
    )
    assert job.last_error is not None and "lease expired" in job.last_error
    assert await store.reclaim_expired() == 0


async def test_a_dead_workers_jobs_are_reclaimed_without_waiting_for_expiry(
    store: JobStore, lease: Lease
) -> None:
    await store.enqueue([NewJob(JobKind.DOWNLOAD_PART, "p2"), NewJob(JobKind.DOWNLOAD_PART, "p3")])
    other = await claim_one(store, "w2")

    assert await store.reclaim_worker("w1") == 1
    assert await store.reclaim_worker("w1") == 0
    job = await current(store, lease)
    assert (job.state, job.attempts, job.worker) == (JobState.PENDING, 1, None)
    assert job.last_error is not None and "w1" in job.last_error
    assert (await current(store, other)).state is JobState.RUNNING  # another holder: untouched
    with pytest.raises(LeaseLost):
        await store.finish(lease, {})
    await store.finish(other, {})


async def test_a_reclaimed_job_keeps_its_place_in_the_queue(
    store: JobStore, clock: FakeClock, lease: Lease
) -> None:
    clock.advance(1)
    await store.enqueue([NewJob(JobKind.DOWNLOAD_PART, "newer")])
    clock.advance(LEASE + 1)
    assert await store.reclaim_expired() == 1
    # Its partial file is on disk: it resumes before work queued after it.
    assert (await claim_one(store, "w2")).job.id == lease.job.id


@pytest.mark.parametrize("write", WRITE_CALLS, ids=WRITE_IDS)
async def test_a_zombie_cannot_write_after_its_job_was_reclaimed(
    store: JobStore, clock: FakeClock, lease: Lease, write: Write
) -> None:
    clock.advance(LEASE + 1)
    await store.reclaim_expired()
    successor = await claim_one(store, "w2")
    assert successor.token != lease.token

    with pytest.raises(LeaseLost):
        await write(store, lease)
    assert not await store.heartbeat(lease, LEASE)

    assert await current(store, lease) == successor.job  # untouched by the zombie
    await store.finish(successor, {"bytes": 2})
    assert (await current(store, lease)).result == {"bytes": 2}


@pytest.mark.parametrize("write", WRITE_CALLS, ids=WRITE_IDS)
async def test_an_expired_lease_refuses_writes_even_before_reclaim(
    store: JobStore, clock: FakeClock, lease: Lease, write: Write
) -> None:
    clock.advance(LEASE + 1)
    with pytest.raises(LeaseLost):
        await write(store, lease)
    assert not await store.heartbeat(lease, LEASE)
    assert (await current(store, lease)).state == JobState.RUNNING


@pytest.mark.parametrize("write", WRITE_CALLS, ids=WRITE_IDS)
async def test_a_forged_token_is_refused(store: JobStore, lease: Lease, write: Write) -> None:
    forged = Lease(lease.job, "not-the-token")
    with pytest.raises(LeaseLost):
        await write(store, forged)
    assert not await store.heartbeat(forged, LEASE)


@pytest.mark.parametrize("write", WRITE_CALLS, ids=WRITE_IDS)
async def test_no_write_after_the_attempt_ended(
    store: JobStore, lease: Lease, write: Write
) -> None:
    await store.finish(lease, {"bytes": 1})
    with pytest.raises((IllegalTransition, LeaseLost)):
        await write(store, lease)
    assert not await store.heartbeat(lease, LEASE)
    job = await current(store, lease)
    assert (job.state, job.result) == (JobState.DONE, {"bytes": 1})


async def test_finishing_twice_is_an_illegal_transition(store: JobStore, lease: Lease) -> None:
    await store.finish(lease, {})
    with pytest.raises(IllegalTransition):
        await store.finish(lease, {})


async def test_finish_after_fail_is_an_illegal_transition(store: JobStore, lease: Lease) -> None:
    await store.fail(lease, "gone")
    with pytest.raises(IllegalTransition):
        await store.finish(lease, {})
    assert (await current(store, lease)).state == JobState.FAILED


async def test_checkpoint_is_durable_and_keeps_running(store: JobStore, lease: Lease) -> None:
    await store.checkpoint(lease, {"offset": 5, "etag": "e"})
    await store.checkpoint(lease, {"offset": 9, "etag": "e"})
    job = await current(store, lease)
    assert (job.state, job.progress) == (JobState.RUNNING, {"offset": 9, "etag": "e"})


async def test_finish_records_the_result(store: JobStore, lease: Lease) -> None:
    await store.finish(lease, {"bytes": 3, "sha256": "abc"})
    job = await current(store, lease)
    assert (job.state, job.result, job.worker, job.lease_until) == (
        JobState.DONE,
        {"bytes": 3, "sha256": "abc"},
        None,
        None,
    )


async def test_retry_later_counts_an_attempt_and_keeps_the_error(
    store: JobStore, clock: FakeClock, lease: Lease
) -> None:
    await store.retry_later(lease, clock() + 5, "503 from media host", progress={"offset": 7})

    job = await current(store, lease)
    assert (job.state, job.attempts, job.last_error) == (
        JobState.PENDING,
        1,
        "503 from media host",
    )
    assert (job.run_after, job.progress, job.worker) == (clock() + 5, {"offset": 7}, None)
    assert await store.claim("w", lease_seconds=LEASE) == []
    clock.advance(5)
    again = await claim_one(store)
    await store.retry_later(again, clock(), "again")
    assert (await current(store, lease)).attempts == 2


async def test_reschedule_waits_without_counting_an_attempt(
    store: JobStore, clock: FakeClock, lease: Lease
) -> None:
    await store.reschedule(lease, clock() + 60, payload={"polls": 1}, progress={"seen": 1})
    job = await current(store, lease)
    assert (job.state, job.attempts, job.run_after) == (JobState.PENDING, 0, clock() + 60)
    assert (job.payload, job.progress) == ({"polls": 1}, {"seen": 1})

    clock.advance(60)
    again = await claim_one(store)
    await store.reschedule(again, clock() + 1)  # no payload/progress: both kept
    job = await current(store, lease)
    assert (job.payload, job.progress, job.attempts) == ({"polls": 1}, {"seen": 1}, 0)


async def test_a_reschedule_after_an_error_clears_the_error_but_keeps_the_attempts(
    store: JobStore, clock: FakeClock, lease: Lease
) -> None:
    """A run that ends in a wait went fine: reports then show a job waiting for the remote
    side, not one still retrying after an error it has recovered from."""
    await store.retry_later(lease, clock(), "cannot connect to the API")
    again = await claim_one(store)
    await store.reschedule(again, clock() + 30)
    job = await current(store, lease)
    assert (job.state, job.last_error, job.attempts) == (JobState.PENDING, None, 1)


async def test_release_makes_the_job_due_now_without_an_attempt(
    store: JobStore, clock: FakeClock, lease: Lease
) -> None:
    await store.release(lease)
    job = await current(store, lease)
    assert (job.state, job.attempts, job.run_after, job.worker) == (
        JobState.PENDING,
        0,
        clock(),
        None,
    )
    assert (await claim_one(store)).job.id == lease.job.id


async def test_fail_keeps_the_reason_and_counts_the_attempt(
    store: JobStore, clock: FakeClock, lease: Lease
) -> None:
    await store.fail(lease, "404: recording deleted")
    clock.advance(365 * 24 * 3600)  # failed jobs never expire
    await store.reclaim_expired()
    job = await current(store, lease)
    assert (job.state, job.last_error, job.attempts) == (
        JobState.FAILED,
        "404: recording deleted",
        1,
    )
    assert await store.claim("w", lease_seconds=LEASE) == []
