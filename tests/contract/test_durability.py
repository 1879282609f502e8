"""What a store holds survives closing and reopening it; integrity can be checked."""

from __future__ import annotations

import pytest

from downloader.lifecycle import JobKind, JobState
from downloader.store import JobStore, NewJob, open_store
from downloader.store.testing import FakeClock

pytestmark = pytest.mark.anyio

PART = JobKind.DOWNLOAD_PART


async def test_everything_survives_close_and_reopen(store_url: str, clock: FakeClock) -> None:
    first = await open_store(store_url, clock=clock)
    try:
        await first.enqueue([NewJob(PART, "p1", payload={"url": "u"}), NewJob(PART, "p2")])
        (lease,) = await first.claim("w", lease_seconds=60)
        await first.checkpoint(lease, {"offset": 42})
        await first.set_cursor("sweep", "c1")
        await first.remember_delivery("msg_1")
        before = await first.list_jobs()
    finally:
        await first.close()

    second = await open_store(store_url, clock=clock)
    try:
        assert await second.list_jobs() == before
        assert await second.get_cursor("sweep") == "c1"
        assert not await second.remember_delivery("msg_1")
        await second.finish(lease, {"bytes": 42})  # a lease outlives a restart of the store
        job = await second.get(lease.job.id)
        assert job is not None and job.state == JobState.DONE
    finally:
        await second.close()


async def test_reopening_an_existing_store_is_harmless(store_url: str, clock: FakeClock) -> None:
    for _ in range(3):  # migrations run once; later opens find the schema current
        opened = await open_store(store_url, clock=clock)
        try:
            await opened.enqueue([NewJob(PART, "p1")])
            assert len(await opened.list_jobs()) == 1
        finally:
            await opened.close()


async def test_integrity_check_passes_on_a_healthy_store(store: JobStore) -> None:
    await store.enqueue([NewJob(PART, f"p{i}") for i in range(50)])
    await store.integrity_check()


async def test_closing_twice_is_harmless(store_url: str, clock: FakeClock) -> None:
    opened = await open_store(store_url, clock=clock)
    await opened.close()
    await opened.close()
