"""`recall-dl status [--json]`: jobs per state, bytes on disk, and every failure with its reason."""

from __future__ import annotations

import argparse
import json
from typing import Any

import anyio

from downloader.app import open_store_for
from downloader.cli.common import EXIT_OK, add_common_options, existing_state, settings_from_args
from downloader.config import Settings
from downloader.lifecycle import JobKind, JobState
from downloader.summary import human_bytes


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    parser.add_argument("--limit", type=int, default=50, help="failures to list (default 50)")
    add_common_options(parser)


async def collect(settings: Settings, state: str, limit: int) -> dict[str, Any]:
    async with open_store_for(settings, state) as store:
        counts = await store.counts()
        failed = await store.list_jobs(state=JobState.FAILED, limit=limit)
        done_parts = await store.list_jobs(kind=JobKind.DOWNLOAD_PART, state=JobState.DONE)
        workers = await store.workers()
    by_kind: dict[str, dict[str, int]] = {}
    for (kind, job_state), number in sorted(counts.items()):
        by_kind.setdefault(kind.value, {})[job_state.value] = number
    totals: dict[str, int] = {}
    for (_, job_state), number in counts.items():
        totals[job_state.value] = totals.get(job_state.value, 0) + number
    return {
        "jobs": by_kind,
        "totals": totals,
        "bytes_done": sum(int(j.result.get("bytes") or 0) for j in done_parts),
        "failures": [
            {"job": j.id, "bot_id": j.bot_id, "reason": j.last_error, "attempts": j.attempts}
            for j in failed
        ],
        "workers": [
            {"worker": w.worker, "last_seen": w.last_seen, "running_jobs": w.running_jobs}
            for w in workers
        ],
    }


def render(report: dict[str, Any]) -> str:
    lines = ["jobs:"]
    for kind, states in report["jobs"].items():
        shown = ", ".join(f"{state} {n}" for state, n in sorted(states.items()))
        lines.append(f"  {kind:<20} {shown}")
    if not report["jobs"]:
        lines.append("  (none)")
    lines.append(f"downloaded: {human_bytes(report['bytes_done'])}")
    if report["workers"]:
        lines.append("workers:")
        lines.extend(f"  {w['worker']}: {w['running_jobs']} running" for w in report["workers"])
    if report["failures"]:
        lines.append("failures:")
        lines.extend(f"  {f['job']} (bot {f['bot_id']}): {f['reason']}" for f in report["failures"])
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    settings = settings_from_args(args)
    report = anyio.run(collect, settings, existing_state(settings), args.limit)
    print(json.dumps(report, indent=2) if args.json else render(report))
    return EXIT_OK
