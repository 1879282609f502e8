"""Composition root shared by every command: settings in, a wired pipeline context out."""

from __future__ import annotations

import os
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from downloader.config import Settings
from downloader.errors import ConfigError
from downloader.pipeline.context import PipelineContext
from downloader.pipeline.runner import reclaim_dead_local_holders
from downloader.recall import RateLimiter, RecallClient
from downloader.sharedbudget import StoreRateBudget
from downloader.store import open_store
from downloader.store.protocol import JobStore
from downloader.store.ratebudget import rate_budget
from downloader.store.sqlite import SqliteStore
from downloader.transfer import TransferLimits, TransferSettings, open_media_session
from downloader.urlpolicy import UrlPolicy


def transfer_settings(settings: Settings) -> TransferSettings:
    return TransferSettings(
        chunk_bytes=settings.chunk_bytes,
        write_buffer_bytes=settings.write_buffer_bytes,
        checkpoint_bytes=settings.checkpoint_bytes,
        connect_timeout=settings.connect_timeout_seconds,
        read_timeout=settings.read_timeout_seconds,
    )


def prepare_out_dir(out: Path) -> Path:
    """Create the output root, or say clearly why it cannot be used."""
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"cannot create output folder {out}: {exc.strerror}") from None
    if not out.is_dir():
        raise ConfigError(f"output path {out} exists and is not a folder")
    try:  # a name of its own: hosts sharing the folder start at the same moment
        fd, probe = tempfile.mkstemp(prefix=".recall-dl-write-test-", dir=out)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise ConfigError(f"output folder {out} is not writable: {exc.strerror}") from None
    return out.resolve()


@asynccontextmanager
async def open_store_for(settings: Settings, state: str) -> AsyncIterator[JobStore]:
    store = await open_store(state)
    try:
        yield store
    finally:
        await store.close()


OUTPUT_ROOT_CURSOR = "output_root"


async def bind_output_root(store: JobStore, out: Path) -> None:
    """A SQLite job store serves one output folder: the first that runs its jobs.

    Jobs record what is done, not where: run with another folder, the same store would
    count files elsewhere as done here, and two commands would write each other's bots into
    their own folders. (Hosts sharing PostgreSQL each write under their own ``--out``; the
    sidecar records which host wrote each part.)
    """
    if not isinstance(store, SqliteStore):
        return
    root = str(out)  # resolved by prepare_out_dir
    if await store.swap_cursor(OUTPUT_ROOT_CURSOR, None, root):
        return
    bound = await store.get_cursor(OUTPUT_ROOT_CURSOR)
    if bound != root:
        raise ConfigError(
            f"the job store {store.path} belongs to the output folder {bound}, not {root}: "
            f"use --out {bound}, or another --state for {root} (without --state, each "
            "output folder gets its own store)"
        )


def limiter_for(settings: Settings, store: JobStore) -> RateLimiter:
    """The API rate limiter, spending the budget kept in the job store.

    Recall counts requests per workspace over a sliding minute, whoever sends them: hosts
    sharing PostgreSQL, but also a command started right after another one ended, or
    ``fetch`` next to ``run`` on one SQLite file. An in-process budget would start each
    process with a full minute's allowance and earn 429s.
    """
    return RateLimiter.from_settings(settings, budget=StoreRateBudget(rate_budget(store)))


@asynccontextmanager
async def open_pipeline(
    settings: Settings, store: JobStore, out: Path, worker: str | None = None
) -> AsyncIterator[PipelineContext]:
    policy = UrlPolicy.for_api(settings.base_url, settings.allowed_hosts)
    transfer = transfer_settings(settings)
    async with (
        RecallClient.open(settings, limiter=limiter_for(settings, store)) as client,
        open_media_session(
            transfer, limit=settings.concurrency, limit_per_host=settings.per_host_concurrency
        ) as media,
    ):
        ctx = PipelineContext(
            settings=settings,
            store=store,
            client=client,
            media=media,
            transfer=transfer,
            limits=TransferLimits(
                global_limit=settings.concurrency,
                per_host=settings.per_host_concurrency,
                per_recording=settings.per_recording_concurrency,
            ),
            policy=policy,
            out=out,
        )
        if worker:
            ctx.worker = worker
        await bind_output_root(store, out)
        # Before any worker claims: what a killed run on this host held is resumed first.
        await reclaim_dead_local_holders(ctx)
        yield ctx
