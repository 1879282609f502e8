"""`recall-dl fetch BOT_ID…`: download every separate video of some bots, then exit.

Exit codes: 0 every part of every bot done and verified; 1 a bot failed; 2 usage or
configuration error; 3 authentication error; 130 interrupted (run the same command to resume).
"""

from __future__ import annotations

import argparse
import signal
import sys
from pathlib import Path

import anyio
import structlog

from downloader.app import open_pipeline, open_store_for, prepare_out_dir
from downloader.cli.common import (
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_OK,
    add_common_options,
    settings_from_args,
    state_url,
)
from downloader.cli.progress import ProgressReporter
from downloader.config import Settings
from downloader.lifecycle import ACTIVE_STATES, JobKind, JobState
from downloader.naming import validate_bot_id
from downloader.pipeline import lease_keeper, run_pools
from downloader.pipeline.finalize import stranded_finalize, wake_finalize
from downloader.pipeline.outputs import requeue_missing_outputs
from downloader.store.protocol import JobStore, NewJob, OnConflict
from downloader.summary import BotSummary, describe, summarise

log = structlog.get_logger(__name__)
FINISHED_CHECK_SECONDS = 0.5
FINALIZE = JobKind.FINALIZE_RECORDING


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("bot_ids", nargs="+", metavar="BOT_ID", help="Recall bot id (UUID)")
    parser.add_argument("--no-progress", action="store_true", help="never draw progress bars")
    add_common_options(parser)


def run(args: argparse.Namespace) -> int:
    bot_ids = list(dict.fromkeys(validate_bot_id(b) for b in args.bot_ids))
    settings = settings_from_args(args)
    settings.require_api_key()
    out = prepare_out_dir(settings.out)
    show_bars = sys.stderr.isatty() and not args.no_progress
    return anyio.run(fetch, settings, bot_ids, out, state_url(settings), show_bars)


async def enqueue_bots(store: JobStore, bot_ids: list[str]) -> None:
    """Queue the bots; jobs of theirs that failed before get another chance."""
    await store.enqueue(
        [NewJob(kind=JobKind.POLL_BOT, key=b, payload={}, bot_id=b) for b in bot_ids],
        OnConflict.REARM,
    )
    failed = [
        job.id
        for bot_id in bot_ids
        for job in await store.list_jobs(bot_id=bot_id, state=JobState.FAILED)
    ]
    if failed:
        await store.requeue(failed)


async def bot_summaries(store: JobStore, bot_ids: list[str]) -> list[BotSummary]:
    return [summarise(b, await store.list_jobs(bot_id=b)) for b in bot_ids]


async def wait_until_finished(store: JobStore, bot_ids: list[str]) -> None:
    while True:
        counts = await store.counts(bot_ids=bot_ids)
        active = {kind for (kind, state), n in counts.items() if n and state in ACTIVE_STATES}
        if not active:
            return
        if active == {JobKind.FINALIZE_RECORDING}:
            await wake_stranded_finalizers(store, bot_ids)
        await anyio.sleep(FINISHED_CHECK_SECONDS)


async def wake_stranded_finalizers(store: JobStore, bot_ids: list[str]) -> None:
    """Only finalize jobs are left: wake any whose recording has nothing else to wait for."""
    for bot_id in bot_ids:
        for recording in {j.parent for j in await store.list_jobs(bot_id=bot_id, kind=FINALIZE)}:
            stranded = stranded_finalize(await store.list_jobs(parent=recording))
            if stranded is not None:
                log.debug("finalize_woken", recording_id=recording)
                await wake_finalize(store, stranded)


async def _stop_on_signal(scope: anyio.CancelScope, interrupted: list[bool]) -> None:
    with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async for _ in signals:
            interrupted.append(True)
            scope.cancel()
            return


async def fetch(
    settings: Settings, bot_ids: list[str], out: Path, state: str, show_bars: bool
) -> int:
    interrupted: list[bool] = []
    async with open_store_for(settings, state) as store:
        async with open_pipeline(settings, store, out) as ctx, anyio.create_task_group() as group:
            # Queued only once the store is known to serve this output folder.
            await enqueue_bots(store, bot_ids)
            await requeue_missing_outputs(store, out, bot_ids)
            draining = anyio.Event()
            group.start_soon(_stop_on_signal, group.cancel_scope, interrupted)
            group.start_soon(run_pools, ctx, draining)
            group.start_soon(lease_keeper, ctx)
            reporter = ProgressReporter(show_bars=show_bars)
            group.start_soon(reporter.run, lambda: bot_summaries(store, bot_ids))
            await wait_until_finished(store, bot_ids)
            draining.set()
            group.cancel_scope.cancel()
        summaries = await bot_summaries(store, bot_ids)
    for summary in summaries:
        print(describe(summary))
    if interrupted:
        print("interrupted: run the same command again to resume", file=sys.stderr)
        return EXIT_INTERRUPTED
    return EXIT_OK if all(s.succeeded for s in summaries) else EXIT_FAILED
