"""`recall-dl retry [--failed | JOB…]`: give failed jobs another chance."""

from __future__ import annotations

import argparse

import anyio

from downloader.app import open_store_for
from downloader.cli.common import (
    EXIT_OK,
    EXIT_USAGE,
    add_common_options,
    settings_from_args,
    state_url,
)
from downloader.config import Settings


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("jobs", nargs="*", metavar="JOB", help="job ids as shown by `status`")
    parser.add_argument("--failed", action="store_true", help="every failed job")
    add_common_options(parser)


async def requeue(settings: Settings, state: str, jobs: list[str] | None) -> int:
    async with open_store_for(settings, state) as store:
        return await store.requeue(jobs)


def run(args: argparse.Namespace) -> int:
    if not args.failed and not args.jobs:
        print("recall-dl retry: name JOB ids or pass --failed")
        return EXIT_USAGE
    settings = settings_from_args(args)
    changed = anyio.run(requeue, settings, state_url(settings), None if args.failed else args.jobs)
    print(f"re-queued {changed} job(s); `recall-dl run` or `fetch` will pick them up")
    return EXIT_OK
