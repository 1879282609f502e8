"""Per-bot summaries: waiting in the call vs retrying after API errors, parts, failures."""

from __future__ import annotations

from downloader.lifecycle import JobKind, JobState
from downloader.store.protocol import Job
from downloader.summary import api_errors, summarise

BOT = "00000000-0000-4000-8000-000000000001"


def job(kind: JobKind, state: JobState, *, error: str | None = None, **result: int) -> Job:
    return Job(
        id=f"{kind.value}:{BOT}",
        kind=kind,
        key=BOT,
        state=state,
        payload={},
        progress={},
        result=dict(result),
        bot_id=BOT,
        parent=None,
        priority=0,
        attempts=1 if error else 0,
        run_after=0.0,
        last_error=error,
        worker=None,
        lease_until=None,
        created_at=0.0,
        updated_at=0.0,
    )


def test_a_poll_waiting_for_the_call_is_in_call() -> None:
    summary = summarise(BOT, [job(JobKind.POLL_BOT, JobState.PENDING)])
    assert summary.waiting_in_call and summary.api_error is None and not summary.finished


def test_a_poll_retrying_after_an_error_is_not_reported_as_in_call() -> None:
    error = "cannot connect to http://127.0.0.1:18999/api/v1/bot/…"
    summary = summarise(BOT, [job(JobKind.POLL_BOT, JobState.PENDING, error=error)])
    assert not summary.waiting_in_call and summary.api_error == error
    waiting = summarise(BOT, [job(JobKind.POLL_BOT, JobState.PENDING)])
    assert api_errors([waiting, summary]) == [error]


def test_done_parts_count_their_bytes_and_failures_keep_their_reason() -> None:
    summary = summarise(
        BOT,
        [
            job(JobKind.DOWNLOAD_PART, JobState.DONE, bytes=1000),
            job(JobKind.DOWNLOAD_PART, JobState.FAILED, error="404 from the media host"),
        ],
    )
    assert (summary.parts_done, summary.parts_total, summary.bytes_done) == (1, 2, 1000)
    assert summary.failures == [(f"download_part:{BOT}", "404 from the media host")]
    assert summary.finished and not summary.succeeded
