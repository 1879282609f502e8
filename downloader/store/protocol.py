"""The job store, in domain operations.

Every implementation (SQLite for one host, PostgreSQL for several) passes the same contract
suite in ``tests/contract``. Work is delivered at least once: handlers must be idempotent.

Ownership of a running job is a *lease*: a random per-attempt token plus an expiry. Every
write a worker makes about a running job (checkpoint, finish, retry, fail, release) names the
token and is refused with :class:`LeaseLost` when the job was reclaimed meanwhile, so a
stalled or partitioned worker can never finish a job someone else now holds.

A lease is held up to and including ``lease_until``. After that every write under it is
refused (LeaseLost, ``heartbeat`` returns False) even before ``reclaim_expired`` has run:
an expired holder must stop, whether or not someone else has taken the job yet.
A write under a token that still names the job's latest attempt, after that attempt has
ended (finish twice, finish after fail or release), raises :class:`IllegalTransition`.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Protocol

from downloader.errors import RecallDlError
from downloader.lifecycle import JobKind, JobState

Json = Mapping[str, Any]


class LeaseLost(RecallDlError):
    """The job is no longer held under this lease token (reclaimed, or finished elsewhere)."""


class IllegalTransition(RecallDlError):
    """The requested change is not allowed from the job's current state."""


class StoreCorrupt(RecallDlError):
    """The state file or database cannot be opened or fails its integrity check."""


class OnConflict(StrEnum):
    """What ``enqueue`` does when a job with the same id exists."""

    IGNORE = "ignore"  # leave the existing job exactly as it is
    UPDATE_PAYLOAD = "update_payload"  # replace payload (fresh URLs), keep state and progress
    # As UPDATE_PAYLOAD, and a FAILED job goes back to PENDING with 0 attempts; a PENDING
    # job waiting beyond the new run_after becomes due then (a wake-up, never a delay).
    REARM = "rearm"


@dataclass(frozen=True)
class NewJob:
    kind: JobKind
    key: str  # the remote id the job is about (bot, recording, part id)
    payload: Json = field(default_factory=dict)
    bot_id: str | None = None  # every job belongs to a bot, for per-bot summaries
    parent: str | None = None  # grouping: recording id for parts and finalize
    run_after: float = 0.0  # epoch seconds; 0 = now
    priority: int = 0  # higher first; backfill uses it for soonest-expiring first


@dataclass(frozen=True)
class Job:
    id: str  # lifecycle.job_id(kind, key)
    kind: JobKind
    key: str
    state: JobState
    payload: Json
    progress: Json  # checkpoint data, e.g. {"offset": n, "etag": "...", "total": n}
    result: Json  # what a finished job produced, e.g. {"bytes": n, "sha256": "..."}
    bot_id: str | None
    parent: str | None
    priority: int
    attempts: int  # failed attempts so far (waiting does not count)
    run_after: float
    last_error: str | None
    worker: str | None  # holder of the current lease, e.g. "host:pid"
    lease_until: float | None
    created_at: float
    updated_at: float


@dataclass(frozen=True)
class Lease:
    job: Job
    token: str


@dataclass(frozen=True)
class WorkerInfo:
    worker: str
    last_seen: float
    running_jobs: int


class JobStore(Protocol):
    """Domain operations over durable jobs. All times are epoch seconds from the store's clock."""

    async def enqueue(
        self, jobs: Sequence[NewJob], on_conflict: OnConflict = OnConflict.IGNORE
    ) -> int:
        """Insert jobs atomically (all or none); returns how many were new."""
        ...

    async def claim(
        self,
        worker: str,
        *,
        kinds: Collection[JobKind] | None = None,
        limit: int = 1,
        lease_seconds: float,
    ) -> list[Lease]:
        """Take up to ``limit`` due PENDING jobs (highest priority, then oldest run_after)."""
        ...

    async def heartbeat(self, lease: Lease, lease_seconds: float) -> bool:
        """Extend the lease; False when it was lost (the caller must stop working on it)."""
        ...

    async def checkpoint(self, lease: Lease, progress: Json) -> None:
        """Durably record progress (replacing the previous) of a RUNNING job. Raises LeaseLost."""
        ...

    async def finish(self, lease: Lease, result: Json) -> None:
        """RUNNING -> DONE. Raises LeaseLost."""
        ...

    async def reschedule(
        self,
        lease: Lease,
        run_after: float,
        *,
        payload: Json | None = None,
        progress: Json | None = None,
    ) -> None:
        """RUNNING -> PENDING to wait for the remote side; does not count an attempt.

        ``payload`` / ``progress`` replace the stored ones when given, else are kept.
        """
        ...

    async def retry_later(
        self, lease: Lease, run_after: float, error: str, *, progress: Json | None = None
    ) -> None:
        """RUNNING -> PENDING after a transient failure; counts an attempt."""
        ...

    async def fail(self, lease: Lease, reason: str) -> None:
        """RUNNING -> FAILED with its reason in ``last_error``; counts the attempt.

        Failed jobs never expire.
        """
        ...

    async def release(self, lease: Lease) -> None:
        """RUNNING -> PENDING, due now, no attempt counted (graceful shutdown)."""
        ...

    async def reclaim_expired(self) -> int:
        """Expired leases go back to PENDING, due now, one attempt counted; returns how many.

        The old token is cleared, so its holder's writes raise LeaseLost. Attempts are not
        checked here: whoever claims the job next sees ``attempts`` and decides
        (``lifecycle.attempts_exhausted``) whether to fail it instead of running it again.
        """
        ...

    async def reclaim_worker(self, worker: str) -> int:
        """RUNNING jobs held by ``worker`` go back to PENDING now, one attempt counted.

        For a holder known to be dead (a process on this host that no longer exists), so its
        jobs need not wait for their leases to expire. Its tokens are cleared like on expiry.
        """
        ...

    async def requeue(self, job_ids: Collection[str] | None = None) -> int:
        """FAILED (or, when named explicitly, DONE) jobs -> PENDING with 0 attempts.

        ``None`` means every FAILED job. Named jobs in another state (or unknown ids) are
        left alone and not counted. Progress and result are kept; the handler decides
        whether they still hold. Returns how many changed.
        """
        ...

    async def get(self, job_id: str) -> Job | None: ...

    async def list_jobs(
        self,
        *,
        kind: JobKind | None = None,
        state: JobState | None = None,
        parent: str | None = None,
        bot_id: str | None = None,
        limit: int | None = None,
    ) -> list[Job]:
        """Jobs matching every given filter, ordered by creation."""
        ...

    async def counts(
        self, *, bot_ids: Collection[str] | None = None
    ) -> dict[tuple[JobKind, JobState], int]:
        """Number of jobs per (kind, state), optionally restricted to some bots."""
        ...

    async def remember_delivery(self, message_id: str) -> bool:
        """Record a webhook message id; False if it was already recorded (a duplicate)."""
        ...

    async def get_cursor(self, name: str) -> str | None: ...

    async def set_cursor(self, name: str, value: str) -> None: ...

    async def swap_cursor(self, name: str, expected: str | None, value: str) -> bool:
        """Set the cursor only if it is absent or still ``expected``; whether it was set.

        A compare-and-set: of several hosts that read the same value and try to replace it,
        exactly one succeeds (e.g. the single sweeper's lease).
        """
        ...

    async def workers(self) -> list[WorkerInfo]:
        """Workers seen recently with the number of RUNNING jobs each holds."""
        ...

    async def integrity_check(self) -> None:
        """Raise StoreCorrupt when the underlying database is damaged."""
        ...

    async def close(self) -> None: ...
