"""`recall-dl verify [--repair]`: re-hash every downloaded part against its sidecar.

Exit 0 when every file matches; 1 when something is missing or changed. With --repair the
damaged files are removed and their parts re-queued (run `fetch`/`run` to download them).
When the output folder has a job store, what it records as done is checked too, so a
recording whose folder or sidecar was deleted is reported, not skipped. Like `status` and
`retry`, verify refuses a SQLite store named outright that does not exist (exit 2).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import anyio

from downloader.app import open_store_for
from downloader.cli.common import (
    EXIT_FAILED,
    EXIT_OK,
    add_common_options,
    existing_state,
    settings_from_args,
)
from downloader.config import Settings
from downloader.errors import ConfigError
from downloader.lifecycle import JobKind, JobState, job_id
from downloader.pipeline.outputs import missing_files
from downloader.verification import Problem, check_sidecar, sidecars


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--repair", action="store_true", help="remove damaged files and re-queue their parts"
    )
    add_common_options(parser)


async def recorded_but_missing(
    settings: Settings, state: str, out: Path
) -> tuple[int, list[Problem]]:
    """(done parts in the job store, those of them or their sidecars absent under ``out``)."""
    async with open_store_for(settings, state) as store:
        jobs = await store.list_jobs(state=JobState.DONE)
    found = await anyio.to_thread.run_sync(missing_files, out, jobs)
    problems = [
        Problem(job.key if job.kind is JobKind.DOWNLOAD_PART else "-", str(job.parent), path, what)
        for job, path, what in found
    ]
    return sum(job.kind is JobKind.DOWNLOAD_PART for job in jobs), problems


def scan(out: Path) -> tuple[int, list[Problem]]:
    checked, problems = 0, []
    for sidecar in sidecars(out):
        count, found = check_sidecar(out, sidecar)
        checked += count
        problems.extend(found)
    return checked, problems


async def repair(settings: Settings, state: str, problems: list[Problem]) -> int:
    ids = {job_id(JobKind.DOWNLOAD_PART, p.part_id) for p in problems if p.part_id != "-"}
    ids |= {job_id(JobKind.FINALIZE_RECORDING, p.recording_id) for p in problems}
    for problem in problems:
        if problem.what != "outside output folder":
            problem.path.unlink(missing_ok=True)
    async with open_store_for(settings, state) as store:
        return await store.requeue(sorted(ids))


def _default_store(settings: Settings) -> str | None:
    try:
        return existing_state(settings)
    except ConfigError:  # this folder was never fetched with the default store
        return None


def run(args: argparse.Namespace) -> int:
    settings = settings_from_args(args)
    out = settings.out
    if not out.is_dir():
        raise ConfigError(f"output folder {out} does not exist")
    # Only --repair uses the job store, but a store named outright must exist either way;
    # a missing one is refused before any file is looked at or removed.
    state = existing_state(settings) if args.repair or settings.state else _default_store(settings)
    checked, problems = scan(out)
    if state is not None:
        listed = {p.path for p in problems}
        recorded, extra = anyio.run(recorded_but_missing, settings, state, out)
        checked = max(checked, recorded)
        problems += [p for p in extra if p.path not in listed]
    for problem in problems:
        whose = (
            f"part {problem.part_id}"
            if problem.part_id != "-"
            else f"recording {problem.recording_id}"
        )
        print(f"{problem.what}: {problem.path} ({whose})")
    print(f"checked {checked} part(s): {len(problems)} problem(s)")
    if problems and args.repair and state is not None:
        changed = anyio.run(repair, settings, state, problems)
        print(f"re-queued {changed} job(s); run `recall-dl fetch` or the service to restore them")
    return EXIT_FAILED if problems else EXIT_OK
