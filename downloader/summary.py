"""Per-bot summaries of the job store, for `fetch`, `status` and progress displays (pure)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from downloader.lifecycle import ACTIVE_STATES, JobKind, JobState
from downloader.store.protocol import Job


@dataclass
class BotSummary:
    bot_id: str
    recordings: int = 0
    parts_total: int = 0
    parts_done: int = 0
    bytes_done: int = 0
    bytes_in_progress: int = 0
    active_jobs: int = 0
    waiting_in_call: bool = False
    # the bot's poll is retrying after an error (API unreachable, 5xx...): the last one
    api_error: str | None = None
    failures: list[tuple[str, str]] = field(default_factory=list)  # (job id, reason)

    @property
    def finished(self) -> bool:
        return self.active_jobs == 0

    @property
    def succeeded(self) -> bool:
        return self.finished and not self.failures


def summarise(bot_id: str, jobs: Iterable[Job]) -> BotSummary:
    summary = BotSummary(bot_id)
    for job in jobs:
        if job.state in ACTIVE_STATES:
            summary.active_jobs += 1
        if job.state is JobState.FAILED:
            summary.failures.append((job.id, job.last_error or "failed"))
        if job.kind is JobKind.POLL_BOT and job.state in ACTIVE_STATES:
            if job.last_error:  # (a poll that got an answer clears it: see reschedule)
                summary.api_error = job.last_error
            else:
                summary.waiting_in_call = True
        elif job.kind is JobKind.RESOLVE_RECORDING:
            summary.recordings += 1
        elif job.kind is JobKind.DOWNLOAD_PART:
            summary.parts_total += 1
            if job.state is JobState.DONE:
                summary.parts_done += 1
                summary.bytes_done += int(job.result.get("bytes") or 0)
            else:
                summary.bytes_in_progress += int(job.progress.get("offset") or 0)
    return summary


def api_errors(summaries: Iterable[BotSummary]) -> list[str]:
    """The last error of every bot whose poll is retrying after API errors."""
    return [s.api_error for s in summaries if s.api_error]


def describe(summary: BotSummary) -> str:
    """One line per bot, as printed at the end of `fetch`."""
    head = f"{summary.bot_id}: "
    body = (
        f"{summary.recordings} recording(s), {summary.parts_done}/{summary.parts_total} parts, "
        f"{human_bytes(summary.bytes_done)}"
    )
    if summary.failures:
        first_id, reason = summary.failures[0]
        more = f" (+{len(summary.failures) - 1} more)" if len(summary.failures) > 1 else ""
        return f"{head}FAILED — {reason} [{first_id}]{more}; {body}"
    if not summary.finished:
        return f"{head}INCOMPLETE — {body}"
    return f"{head}done — {body}"


def human_bytes(count: int) -> str:
    value = float(count)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} TiB"
