"""Row <-> domain conversion shared by every SQL backend (JSON columns are text)."""

from __future__ import annotations

import json
from typing import Any

from downloader.lifecycle import JobKind, JobState
from downloader.store.protocol import IllegalTransition, Job, Json, LeaseLost


def dump_json(value: Json | None) -> str | None:
    # Compact and key-sorted so equal payloads compare equal as text.
    if value is None:
        return None
    return json.dumps(value, separators=(",", ":"), sort_keys=True)


def load_json(text: str | None) -> Json:
    if not text:
        return {}
    value = json.loads(text)
    if not isinstance(value, dict):
        raise ValueError(f"expected a JSON object, got {type(value).__name__}")
    return value


def job_from_row(row: Any) -> Job:
    """Build a Job from a row addressable by column name (sqlite3.Row, asyncpg.Record)."""
    lease_until = row["lease_until"]
    return Job(
        id=row["id"],
        kind=JobKind(row["kind"]),
        key=row["key"],
        state=JobState(row["state"]),
        payload=load_json(row["payload"]),
        progress=load_json(row["progress"]),
        result=load_json(row["result"]),
        bot_id=row["bot_id"],
        parent=row["parent"],
        priority=int(row["priority"]),
        attempts=int(row["attempts"]),
        run_after=float(row["run_after"]),
        last_error=row["last_error"],
        worker=row["worker"],
        lease_until=None if lease_until is None else float(lease_until),
        created_at=float(row["created_at"]),
        updated_at=float(row["updated_at"]),
    )


def check_claim_args(limit: int, lease_seconds: float) -> None:
    if limit < 0:
        raise ValueError(f"limit must be >= 0, got {limit}")
    check_lease_seconds(lease_seconds)


def check_lease_seconds(lease_seconds: float) -> None:
    if not lease_seconds > 0:
        raise ValueError(f"lease_seconds must be > 0, got {lease_seconds}")


def refusal(job_id: str, row: Any, token: str, now: float) -> Exception:
    """Why a compare-and-set write under ``token`` matched nothing (``row`` read just after).

    LeaseLost: the job is held under another token, by nobody, or the lease ran out.
    IllegalTransition: this token still names the job's latest attempt, but the attempt
    already ended (finish twice, finish after fail or release).
    """
    if row is None:
        return LeaseLost(f"job {job_id} does not exist")
    if row["lease_token"] != token:
        return LeaseLost(f"job {job_id} is no longer held under this lease")
    if row["state"] != JobState.RUNNING:
        return IllegalTransition(f"job {job_id} is {row['state']}, not running")
    return LeaseLost(f"job {job_id}: lease expired at {row['lease_until']:.3f} (now {now:.3f})")
