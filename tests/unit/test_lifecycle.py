"""The job state machine and timing decisions."""

from __future__ import annotations

import random

from hypothesis import given
from hypothesis import strategies as st

from downloader import lifecycle
from downloader.lifecycle import JobState


def test_transitions() -> None:
    assert lifecycle.can_transition(JobState.PENDING, JobState.RUNNING)
    assert lifecycle.can_transition(JobState.RUNNING, JobState.DONE)
    assert not lifecycle.can_transition(JobState.PENDING, JobState.DONE)
    assert not lifecycle.can_transition(JobState.DONE, JobState.RUNNING)
    assert lifecycle.can_transition(JobState.FAILED, JobState.PENDING)


@given(st.integers(min_value=1, max_value=60), st.integers(min_value=0, max_value=2**32))
def test_backoff_is_bounded_and_grows(attempt: int, seed: int) -> None:
    rng = random.Random(seed)
    delay = lifecycle.backoff_delay(attempt, base=2.0, cap=300.0, rng=rng)
    ceiling = min(300.0, 2.0 * 2 ** (attempt - 1))
    assert ceiling / 2 <= delay <= ceiling


def test_server_hint_wins_when_longer() -> None:
    assert lifecycle.retry_delay(1, 30.0, rng=random.Random(1)) == 30.0
    assert lifecycle.retry_delay(1, None, rng=random.Random(1)) <= 2.0


def test_poll_schedule_starts_short_and_caps() -> None:
    delays = [lifecycle.poll_delay(n, initial=15, maximum=300) for n in range(20)]
    assert delays[0] == 15 and delays == sorted(delays) and delays[-1] == 300


def test_job_ids_are_stable() -> None:
    assert lifecycle.job_id(lifecycle.JobKind.DOWNLOAD_PART, "abc") == "download_part:abc"
