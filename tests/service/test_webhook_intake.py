"""A verified delivery against a real store: durable enqueue first, then the dedup record."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from downloader.errors import RecallDlError
from downloader.lifecycle import JobKind, JobState, job_id
from downloader.service.webhooks import Outcome, Verified, accept
from downloader.store import JobStore, NewJob, OnConflict, open_store
from tests.service.harness import bot_event, recording_event

pytestmark = pytest.mark.anyio
BOT = "8a5f6e0c-1b2d-4c3e-9f00-123456789abc"
REC = "11111111-2222-4333-8444-555555555555"


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[JobStore]:
    opened = await open_store(str(tmp_path / "state.db"))
    try:
        yield opened
    finally:
        await opened.close()


def delivery(msg_id: str, body: dict[str, Any]) -> Verified:
    return Verified(message_id=msg_id, event=str(body["event"]), body=body)


async def all_jobs(store: JobStore) -> list[tuple[str, JobState]]:
    return [(j.id, j.state) for j in await store.list_jobs()]


async def test_a_delivery_is_enqueued_once(store: JobStore) -> None:
    done = delivery("msg_1", bot_event("bot.done", BOT))
    assert await accept(store, done) is Outcome.ENQUEUED
    assert await all_jobs(store) == [(job_id(JobKind.POLL_BOT, BOT), JobState.PENDING)]
    assert await accept(store, done) is Outcome.DUPLICATE
    # Another delivery about the same bot is new, but the job exists: nothing is added.
    assert await accept(store, delivery("msg_2", bot_event("bot.fatal", BOT))) is Outcome.ENQUEUED
    assert len(await all_jobs(store)) == 1


async def test_ignored_events_touch_nothing(store: JobStore) -> None:
    joining = delivery("msg_1", bot_event("bot.joining_call", BOT))
    assert await accept(store, joining) is Outcome.IGNORED
    assert await all_jobs(store) == []
    assert await store.remember_delivery("msg_1")  # not even remembered


async def test_bot_done_rearms_a_failed_poll_once_per_delivery(store: JobStore) -> None:
    await store.enqueue([NewJob(kind=JobKind.POLL_BOT, key=BOT, bot_id=BOT)])
    [lease] = await store.claim("w", lease_seconds=30)
    await store.fail(lease, "gave up")
    done = delivery("msg_1", bot_event("bot.done", BOT))
    assert await accept(store, done) is Outcome.ENQUEUED
    job = await store.get(job_id(JobKind.POLL_BOT, BOT))
    assert job is not None and (job.state, job.attempts) == (JobState.PENDING, 0)
    [lease] = await store.claim("w", lease_seconds=30)
    await store.fail(lease, "gave up again")
    assert await accept(store, done) is Outcome.DUPLICATE  # a retry of the same delivery
    job = await store.get(job_id(JobKind.POLL_BOT, BOT))
    assert job is not None and job.state is JobState.FAILED
    # bot.fatal never re-arms: the poll records the failure from the API state.
    fatal = delivery("msg_2", bot_event("bot.fatal", BOT))
    assert await accept(store, fatal) is Outcome.ENQUEUED
    job = await store.get(job_id(JobKind.POLL_BOT, BOT))
    assert job is not None and job.state is JobState.FAILED


class FailingEnqueue:
    """A store whose enqueue fails once (e.g. the disk is full); everything else is real."""

    def __init__(self, inner: JobStore) -> None:
        self.inner = inner
        self.failures = 1

    async def enqueue(
        self, jobs: Sequence[NewJob], on_conflict: OnConflict = OnConflict.IGNORE
    ) -> int:
        if self.failures:
            self.failures -= 1
            raise RecallDlError("database or disk is full")
        return await self.inner.enqueue(jobs, on_conflict)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


async def test_a_failed_enqueue_is_not_remembered(store: JobStore) -> None:
    flaky: Any = FailingEnqueue(store)
    rec = delivery("msg_1", recording_event("recording.done", REC, BOT))
    with pytest.raises(RecallDlError):
        await accept(flaky, rec)
    assert await all_jobs(store) == []
    # Svix delivers again: this time the work is queued (the first try left no dedup record).
    assert await accept(flaky, rec) is Outcome.ENQUEUED
    job = await store.get(job_id(JobKind.RESOLVE_RECORDING, REC))
    assert job is not None and dict(job.payload) == {"bot_id": BOT, "recording_id": REC}
