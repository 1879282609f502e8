"""Job states, the transitions between them, and the timing decisions (pure).

::

                 claim                finish
    PENDING ───────────────▶ RUNNING ─────────▶ DONE
       ▲  ▲                    │  │
       │  └── reschedule ──────┘  │ fail (permanent, or attempts exhausted)
       │      retry_later         ▼
       │      release          FAILED
       │      lease expired       │
       └──────── requeue ─────────┘

A job that must wait (a bot still in the call, media still processing) goes back to
PENDING with a later ``run_after``; no worker ever sleeps while holding a job.
"""

from __future__ import annotations

import random
from enum import StrEnum


class JobState(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"


class JobKind(StrEnum):
    POLL_BOT = "poll_bot"
    RESOLVE_RECORDING = "resolve_recording"
    FETCH_MANIFEST = "fetch_manifest"
    DOWNLOAD_PART = "download_part"
    FINALIZE_RECORDING = "finalize_recording"


TERMINAL_STATES = frozenset({JobState.DONE, JobState.FAILED})
ACTIVE_STATES = frozenset({JobState.PENDING, JobState.RUNNING})

# Kinds that talk to the Recall API (small, rate-limited) versus kinds that move media bytes.
API_KINDS = frozenset(
    {
        JobKind.POLL_BOT,
        JobKind.RESOLVE_RECORDING,
        JobKind.FETCH_MANIFEST,
        JobKind.FINALIZE_RECORDING,
    }
)
TRANSFER_KINDS = frozenset({JobKind.DOWNLOAD_PART})

ALLOWED_TRANSITIONS: dict[JobState, frozenset[JobState]] = {
    JobState.PENDING: frozenset({JobState.RUNNING}),
    JobState.RUNNING: frozenset({JobState.PENDING, JobState.DONE, JobState.FAILED}),
    JobState.DONE: frozenset({JobState.PENDING}),  # verify --repair re-queues a damaged file
    JobState.FAILED: frozenset({JobState.PENDING}),  # retry
}

DEFAULT_MAX_ATTEMPTS = 8
DEFAULT_BACKOFF_BASE_SECONDS = 2.0
DEFAULT_BACKOFF_CAP_SECONDS = 300.0


def job_id(kind: JobKind, key: str) -> str:
    """The stable identity of a job: one job per (kind, remote id), so enqueueing is idempotent."""
    return f"{kind.value}:{key}"


def can_transition(current: JobState, new: JobState) -> bool:
    return new in ALLOWED_TRANSITIONS[current]


def backoff_delay(
    attempt: int,
    *,
    base: float = DEFAULT_BACKOFF_BASE_SECONDS,
    cap: float = DEFAULT_BACKOFF_CAP_SECONDS,
    rng: random.Random | None = None,
) -> float:
    """Seconds to wait before attempt ``attempt + 1`` (``attempt`` >= 1 failures so far).

    Full jitter (uniform between 0 and the exponential ceiling) spreads retries of many jobs
    that failed together, e.g. after a 503 burst, so they do not return together.
    """
    ceiling = min(cap, base * (2 ** max(0, attempt - 1)))
    return (rng or random).uniform(ceiling / 2, ceiling)


def retry_delay(
    attempt: int,
    server_hint: float | None,
    *,
    base: float = DEFAULT_BACKOFF_BASE_SECONDS,
    cap: float = DEFAULT_BACKOFF_CAP_SECONDS,
    rng: random.Random | None = None,
) -> float:
    """The server's Retry-After wins over our own back-off when it asks for longer."""
    ours = backoff_delay(attempt, base=base, cap=cap, rng=rng)
    return max(ours, server_hint) if server_hint is not None else ours


def attempts_exhausted(attempts: int, max_attempts: int = DEFAULT_MAX_ATTEMPTS) -> bool:
    return attempts >= max_attempts


def poll_delay(polls_so_far: int, *, initial: float, maximum: float, factor: float = 1.5) -> float:
    """Bot/media polling starts short (a call may be ending) and grows towards ``maximum``."""
    return min(maximum, initial * factor ** max(0, polls_so_far))
