"""Concurrent claimers, in one process and in several, never receive the same job twice."""

from __future__ import annotations

import json
import sys
from collections import Counter

import anyio
import pytest

from downloader.lifecycle import JobKind, JobState
from downloader.store import JobStore, NewJob, open_store
from downloader.store.testing import FakeClock

pytestmark = pytest.mark.anyio

PART = JobKind.DOWNLOAD_PART
JOBS = 300

# A claimer in its own OS process: opens the store (real clock), says "ready", waits for
# "go" on stdin so that every process starts claiming together, then claims until the queue
# is empty, finishing each job, and prints the ids it got as JSON.
CHILD = """
import asyncio, json, sys
from downloader.store import open_store

async def main(url, worker):
    store = await open_store(url)
    try:
        print("ready", flush=True)
        sys.stdin.readline()
        got = []
        while leases := await store.claim(worker, limit=3, lease_seconds=60):
            for lease in leases:
                got.append(lease.job.id)
                await store.finish(lease, {"by": worker})
        print(json.dumps(got), flush=True)
    finally:
        await store.close()

asyncio.run(main(sys.argv[1], sys.argv[2]))
"""


async def drain(store: JobStore, worker: str, got: list[str]) -> None:
    while leases := await store.claim(worker, limit=3, lease_seconds=60):
        for lease in leases:
            got.append(lease.job.id)
            await store.finish(lease, {"by": worker})


def assert_each_job_once(store_ids: list[str], claimed: list[str]) -> None:
    twice = [job for job, n in Counter(claimed).items() if n > 1]
    assert twice == []
    assert sorted(claimed) == sorted(store_ids)


async def test_concurrent_tasks_never_share_a_job(
    store_url: str, store: JobStore, clock: FakeClock
) -> None:
    await store.enqueue([NewJob(PART, f"p{i}") for i in range(JOBS)])
    ids = [job.id for job in await store.list_jobs()]
    # Tasks sharing one store object, and tasks with stores (connections) of their own.
    others = [await open_store(store_url, clock=clock) for _ in range(3)]
    got: list[str] = []
    try:
        async with anyio.create_task_group() as tg:
            for i, each in enumerate([store, store, store, *others]):
                tg.start_soon(drain, each, f"task-{i}", got)
    finally:
        for other in others:
            await other.close()
    assert_each_job_once(ids, got)


@pytest.mark.slow
async def test_concurrent_processes_never_share_a_job(store_url: str, store: JobStore) -> None:
    await store.enqueue([NewJob(PART, f"p{i}") for i in range(JOBS)])
    ids = [job.id for job in await store.list_jobs()]
    results: dict[int, list[str]] = {}

    async def child(n: int, ready: anyio.Event, go: anyio.Event) -> None:
        command = [sys.executable, "-c", CHILD, store_url, f"proc-{n}"]
        async with await anyio.open_process(command) as proc:
            assert proc.stdin is not None and proc.stdout is not None
            lines = proc.stdout
            buffer = b""
            while b"\n" not in buffer:
                buffer += await lines.receive()
            assert buffer.startswith(b"ready")
            ready.set()
            await go.wait()
            await proc.stdin.send(b"go\n")
            buffer = buffer.split(b"\n", 1)[1]
            async for chunk in lines:
                buffer += chunk
            assert await proc.wait() == 0
        results[n] = json.loads(buffer)

    readies = [anyio.Event() for _ in range(4)]
    go = anyio.Event()
    with anyio.fail_after(60):
        async with anyio.create_task_group() as tg:
            for n, ready in enumerate(readies):
                tg.start_soon(child, n, ready, go)
            for ready in readies:
                await ready.wait()
            go.set()

    claimed = [job for got in results.values() for job in got]
    assert_each_job_once(ids, claimed)
    assert sum(1 for got in results.values() if got) >= 2  # they really competed


async def test_cancelled_calls_leave_the_store_whole_and_usable(
    store: JobStore, clock: FakeClock
) -> None:
    await store.enqueue([NewJob(PART, f"p{i}") for i in range(20)])
    for _ in range(20):
        with anyio.CancelScope() as scope:
            scope.cancel()  # cancelled at its first await, wherever that is
            await store.claim("w", limit=2, lease_seconds=30)
    # Each job is either untouched or fully claimed (then reclaimed after its lease).
    jobs = await store.list_jobs()
    assert {job.state for job in jobs} <= {JobState.PENDING, JobState.RUNNING}
    assert all((job.worker is None) == (job.state is JobState.PENDING) for job in jobs)
    clock.advance(31)
    await store.reclaim_expired()
    got: list[str] = []
    await drain(store, "after", got)
    assert sorted(got) == sorted(job.id for job in jobs)
