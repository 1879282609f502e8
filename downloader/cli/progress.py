"""Progress for long commands: rich bars on a terminal, periodic log lines elsewhere."""

from __future__ import annotations

import sys
import time
from collections.abc import Awaitable, Callable, Sequence

import anyio
import structlog
from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)

from downloader.summary import BotSummary, api_errors

log = structlog.get_logger(__name__)
REFRESH_SECONDS = 0.5
LOG_EVERY_SECONDS = 10.0

SummarySource = Callable[[], Awaitable[Sequence[BotSummary]]]


class ProgressReporter:
    def __init__(self, *, show_bars: bool, log_every: float = LOG_EVERY_SECONDS) -> None:
        self.show_bars = show_bars
        self.log_every = log_every

    async def run(self, source: SummarySource) -> None:
        if self.show_bars:
            await self._bars(source)
        else:
            await self._log_lines(source)

    async def _log_lines(self, source: SummarySource) -> None:
        while True:
            await anyio.sleep(self.log_every)
            summaries = await source()
            errors = api_errors(summaries)
            log.info(
                "fetch_progress",
                bots=len(summaries),
                bots_waiting_in_call=sum(s.waiting_in_call for s in summaries),
                bots_retrying=len(errors),
                last_error=errors[-1] if errors else None,
                parts_done=sum(s.parts_done for s in summaries),
                parts_total=sum(s.parts_total for s in summaries),
                bytes_done=sum(s.bytes_done for s in summaries),
                failures=sum(len(s.failures) for s in summaries),
            )

    async def _bars(self, source: SummarySource) -> None:
        progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            DownloadColumn(),
            TransferSpeedColumn(),
            TextColumn("{task.fields[parts]}"),
            TimeRemainingColumn(),
            console=Console(file=sys.stderr),
            transient=False,
        )
        task: TaskID = progress.add_task("starting", total=None, parts="")
        started = time.monotonic()
        with progress:
            while True:
                summaries = await source()
                done = sum(s.bytes_done + s.bytes_in_progress for s in summaries)
                parts_done = sum(s.parts_done for s in summaries)
                parts_total = sum(s.parts_total for s in summaries)
                waiting = sum(s.waiting_in_call for s in summaries)
                finished = sum(s.finished for s in summaries)
                description = f"bots {finished}/{len(summaries)}"
                if waiting:
                    description += f" ({waiting} in call)"
                errors = api_errors(summaries)
                if errors:
                    description += f" ({len(errors)} retrying: {errors[-1]})"
                progress.update(
                    task,
                    description=description,
                    completed=done,
                    parts=f"parts {parts_done}/{parts_total}",
                    elapsed=time.monotonic() - started,
                )
                await anyio.sleep(REFRESH_SECONDS)
