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
from downloader.lifecycle import JobKind, JobState
from downloader.pipeline.context import PipelineContext
from downloader.pipeline.outcome import Finish, Outcome, Wait
from downloader.store.protocol import Job, Lease

log = structlog.get_logger(__name__)

SIDECAR_VERSION = 1
WAIT_FOR_PARTS_SECONDS = 5.0


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
        return Wait(WAIT_FOR_PARTS_SECONDS, reason="parts still downloading")
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
