"""finalize_recording: once every part is on disk, write the recording's manifest.json."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import anyio
import structlog

from downloader import naming
from downloader.errors import JobFailed
from downloader.fsutil import atomic_write_bytes
from downloader.lifecycle import ACTIVE_STATES, JobKind, JobState, poll_delay
from downloader.pipeline.context import PipelineContext
from downloader.pipeline.outcome import Finish, Outcome, Wait
from downloader.store.protocol import Job, JobStore, Lease, NewJob, OnConflict

log = structlog.get_logger(__name__)

SIDECAR_VERSION = 1
WAIT_FOR_PARTS_SECONDS = 5.0
MAX_WAIT_SECONDS = 600.0


def stranded_finalize(jobs: Sequence[Job]) -> Job | None:
    """A recording's finalize job still waiting although nothing else of it can change.

    The last part normally wakes it; a crash between that part's commit and the wake-up
    leaves it waiting for its safety-net delay. Callers that wait for completion wake it.
    """
    finalize = [j for j in jobs if j.kind is JobKind.FINALIZE_RECORDING]
    others = [j for j in jobs if j.kind is not JobKind.FINALIZE_RECORDING]
    if len(finalize) != 1 or finalize[0].state is not JobState.PENDING:
        return None
    if any(j.state in ACTIVE_STATES for j in others):
        return None
    return finalize[0]


async def wake_finalize(store: JobStore, job: Job) -> None:
    """Make a waiting finalize job due now (REARM never delays a job)."""
    await store.enqueue(
        [NewJob(job.kind, job.key, job.payload, bot_id=job.bot_id, parent=job.parent)],
        OnConflict.REARM,
    )


def sidecar_entry(job: Job) -> dict[str, Any]:
    payload, result = job.payload, job.result
    return {
        "id": job.key,
        "participant": payload.get("participant"),
        "type": payload.get("type"),
        "start_timestamp": payload.get("start_timestamp"),
        "duration": payload.get("duration"),
        "path": result.get("path", payload.get("path")),
        "bytes": result.get("bytes"),
        "sha256": result.get("sha256"),
        "host": result.get("host"),
    }


def build_sidecar(
    *, bot_id: str, recording_id: str, video_separate_id: str, parts: Sequence[Job]
) -> dict[str, Any]:
    """The sidecar lists parts in time order, so it reads like the meeting."""
    entries = sorted(
        (sidecar_entry(job) for job in parts),
        key=lambda e: ((e.get("start_timestamp") or {}).get("relative") or 0.0, e["id"]),
    )
    return {
        "version": SIDECAR_VERSION,
        "bot_id": bot_id,
        "recording_id": recording_id,
        "video_separate_id": video_separate_id,
        "parts": entries,
    }


async def finalize_recording(ctx: PipelineContext, lease: Lease) -> Outcome:
    payload = lease.job.payload
    bot_id, recording_id = str(payload["bot_id"]), str(payload["recording_id"])
    parts = await ctx.store.list_jobs(kind=JobKind.DOWNLOAD_PART, parent=recording_id)
    failed = [p for p in parts if p.state is JobState.FAILED]
    if failed:
        raise JobFailed(f"{len(failed)} part(s) of recording {recording_id} failed")
    if any(p.state is not JobState.DONE for p in parts):
        # The last part wakes this job when it finishes; checking is only a safety net.
        checks = int(payload.get("checks") or 0)
        delay = poll_delay(checks, initial=WAIT_FOR_PARTS_SECONDS, maximum=MAX_WAIT_SECONDS)
        return Wait(
            delay, reason="parts still downloading", payload={**payload, "checks": checks + 1}
        )
    sidecar = build_sidecar(
        bot_id=bot_id,
        recording_id=recording_id,
        video_separate_id=str(payload["video_separate_id"]),
        parts=parts,
    )
    folder = naming.recording_dir(ctx.out, bot_id, recording_id)
    path = naming.ensure_inside(ctx.out, folder / naming.SIDECAR_NAME)
    data = json.dumps(sidecar, indent=2, ensure_ascii=False).encode("utf-8") + b"\n"
    await anyio.to_thread.run_sync(atomic_write_bytes, path, data)
    total = sum(int(p.result.get("bytes") or 0) for p in parts)
    log.info("recording_finalized", recording_id=recording_id, parts=len(parts), bytes=total)
    return Finish({"parts": len(parts), "bytes": total, "sidecar": str(path.relative_to(ctx.out))})
