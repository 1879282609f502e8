"""Our engine, driven exactly as the pipeline drives it (one ``download_part`` per file).

``python -m bench.transfer.ours --list urls.txt --out DIR --concurrency 8``
Each line of the list is ``URL<TAB>relative/output/name``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import time
from collections.abc import Iterator
from pathlib import Path

import anyio
import structlog
from yarl import URL

from downloader.transfer import (
    Checkpoint,
    TransferLimits,
    TransferSettings,
    download_part,
    open_media_session,
)
from downloader.tuning import freeze_startup_objects, tune_allocator
from downloader.urlpolicy import UrlPolicy


async def persist(checkpoint: Checkpoint) -> None:
    """Stands in for the job store's checkpoint write."""


async def run(jobs: list[tuple[str, Path]], concurrency: int, settings: TransferSettings) -> int:
    origin = URL(jobs[0][0]).origin()
    policy = UrlPolicy.for_api(str(origin))
    limits = TransferLimits(concurrency, concurrency, concurrency)
    pending: Iterator[tuple[str, Path]] = iter(jobs)
    total = 0

    async def worker() -> None:
        nonlocal total
        for url, path in pending:
            async with limits.slot(origin.host or "", "bench"):
                result = await download_part(
                    media, url, path, on_checkpoint=persist, settings=settings, policy=policy
                )
            total += result.bytes

    async with (
        open_media_session(settings, limit=concurrency, limit_per_host=concurrency) as media,
        anyio.create_task_group() as tg,
    ):
        for _ in range(concurrency):
            tg.start_soon(worker)
    return total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--list", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--chunk-bytes", type=int, default=TransferSettings().chunk_bytes)
    parser.add_argument(
        "--write-buffer-bytes", type=int, default=TransferSettings().write_buffer_bytes
    )
    parser.add_argument("--checkpoint-bytes", type=int, default=TransferSettings().checkpoint_bytes)
    parser.add_argument("--no-tune", action="store_true", help="skip the allocator tuning")
    parser.add_argument(
        "--report", type=Path, help="write the in-process seconds of the transfers (JSON) here"
    )
    parser.add_argument(
        "--no-fsync",
        action="store_true",
        help="DIAGNOSTIC ONLY: make fsync a no-op to see the engine without its durability cost",
    )
    args = parser.parse_args()
    if not args.no_tune:
        tune_allocator()
        freeze_startup_objects()
    if args.no_fsync:
        os.fsync = lambda fd: None
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    jobs = []
    for line in args.list.read_text().splitlines():
        url, name = line.split("\t")
        jobs.append((url, args.out / name))
    settings = TransferSettings(
        chunk_bytes=args.chunk_bytes,
        write_buffer_bytes=args.write_buffer_bytes,
        checkpoint_bytes=args.checkpoint_bytes,
    )
    started = time.perf_counter()
    anyio.run(run, jobs, args.concurrency, settings)
    if args.report is not None:  # excludes interpreter start-up and imports
        args.report.write_text(json.dumps({"seconds": time.perf_counter() - started}))


if __name__ == "__main__":
    main()
