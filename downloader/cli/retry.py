"""`recall-dl retry [--failed | JOB…]`: give failed jobs another chance.

``--failed`` re-queues every failed job. Named jobs are re-queued when failed or done (a
done part named outright is downloaded again: the way to redo one part on purpose).

Named jobs that do not exist, or that are neither failed nor done (pending or running: they
will run anyway), are named with the reason; exit 1 when none of the named jobs was re-queued.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

import anyio

from downloader.app import open_store_for
from downloader.cli.common import (
    EXIT_FAILED,
    EXIT_OK,
    EXIT_USAGE,
    add_common_options,
    existing_state,
    settings_from_args,
)
from downloader.config import Settings
from downloader.lifecycle import JobState

# What JobStore.requeue takes back when a job is named (a done job is fetched again).
REQUEUEABLE = frozenset({JobState.FAILED, JobState.DONE})


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("jobs", nargs="*", metavar="JOB", help="job ids as shown by `status`")
    parser.add_argument("--failed", action="store_true", help="every failed job")
    add_common_options(parser)


async def requeue(
    settings: Settings, state: str, jobs: Sequence[str] | None
) -> tuple[int, list[str]]:
    """(jobs re-queued, one line per named job that could not be)."""
    refused: list[str] = []
    async with open_store_for(settings, state) as store:
        if jobs is not None:
            for name in dict.fromkeys(jobs):
                job = await store.get(name)
                if job is None:
                    refused.append(f"{name}: no such job")
                elif job.state not in REQUEUEABLE:
                    refused.append(f"{name}: {job.state.value}, not failed (nothing to retry)")
        changed = await store.requeue(None if jobs is None else list(dict.fromkeys(jobs)))
    return changed, refused


def run(args: argparse.Namespace) -> int:
    if not args.failed and not args.jobs:
        print("recall-dl retry: name JOB ids or pass --failed", file=sys.stderr)
        return EXIT_USAGE
    if args.failed and args.jobs:
        print("recall-dl retry: name JOB ids or pass --failed, not both", file=sys.stderr)
        return EXIT_USAGE
    settings = settings_from_args(args)
    state = existing_state(settings)
    changed, refused = anyio.run(requeue, settings, state, None if args.failed else args.jobs)
    for line in refused:
        print(f"recall-dl retry: {line}", file=sys.stderr)
    if args.failed and not changed:
        print("no failed jobs to re-queue")
        return EXIT_OK
    if not changed:
        print("re-queued 0 job(s): none of the named jobs can be retried", file=sys.stderr)
        return EXIT_FAILED
    print(f"re-queued {changed} job(s); `recall-dl run` or `fetch` will pick them up")
    return EXIT_OK
