"""What the job store says is done, checked against what is on disk under this ``--out``.

A part is done in the store once its file was renamed into place — but the file can be
deleted afterwards, or the command run with another output folder. ``fetch`` must not report
success for files that are not there, so before it starts, done parts whose file is missing
(or has another size) and done recordings whose sidecar is missing are queued again. This is
a stat per file, not a re-hash (that is ``recall-dl verify``).
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from pathlib import Path

import anyio
import structlog

from downloader import naming
from downloader.lifecycle import JobKind, JobState, job_id
from downloader.store.protocol import Job, JobStore

log = structlog.get_logger(__name__)


def missing_files(out: Path, jobs: Sequence[Job]) -> list[tuple[Job, Path, str]]:
    """(job, path, what) for each done part or sidecar that is not on disk (blocking)."""
    found: list[tuple[Job, Path, str]] = []
    for job in jobs:
        if job.state is not JobState.DONE or job.bot_id is None or job.parent is None:
            continue
        folder = naming.recording_dir(out, job.bot_id, job.parent)
        if job.kind is JobKind.DOWNLOAD_PART:
            path = folder / str(job.result.get("path") or job.payload.get("path"))
            if not _has_size(path, job.result.get("bytes")):
                what = "size differs" if path.is_file() else "missing"
                found.append((job, path, what))
        elif job.kind is JobKind.FINALIZE_RECORDING:
            sidecar = folder / naming.SIDECAR_NAME
            if not sidecar.is_file():
                found.append((job, sidecar, "sidecar missing"))
    return found


def missing_outputs(out: Path, jobs: Sequence[Job]) -> list[str]:
    """Ids of done jobs whose output is not on disk (blocking: call in a thread).

    A missing part also re-opens its recording's finalize job, so the sidecar is rewritten.
    """
    again: set[str] = set()
    for job, _, _ in missing_files(out, jobs):
        again.add(job.id)
        if job.kind is JobKind.DOWNLOAD_PART and job.parent is not None:
            again.add(job_id(JobKind.FINALIZE_RECORDING, job.parent))
    return sorted(again)


def _has_size(path: Path, size: object) -> bool:
    try:
        return path.is_file() and path.stat().st_size == size
    except OSError:
        return False


async def requeue_missing_outputs(store: JobStore, out: Path, bot_ids: Collection[str]) -> int:
    """Queue again what the store has as done but ``out`` does not hold; returns how many."""
    again: list[str] = []
    for bot_id in bot_ids:
        jobs = await store.list_jobs(bot_id=bot_id, state=JobState.DONE)
        again += await anyio.to_thread.run_sync(missing_outputs, out, jobs)
    if not again:
        return 0
    log.warning("outputs_missing_requeued", jobs=len(again), out=str(out))
    return await store.requeue(again)
