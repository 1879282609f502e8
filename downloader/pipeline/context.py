"""Everything a task handler needs, built once by the composition root and passed down."""

from __future__ import annotations

import os
import socket
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import anyio

from downloader.config import Settings
from downloader.recall import RecallClient
from downloader.store.protocol import JobStore
from downloader.transfer import TransferLimits, TransferSettings
from downloader.urlpolicy import UrlPolicy


def default_worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


@dataclass
class PipelineContext:
    settings: Settings
    store: JobStore
    client: RecallClient
    media: aiohttp.ClientSession
    transfer: TransferSettings
    limits: TransferLimits
    policy: UrlPolicy
    out: Path
    worker: str = field(default_factory=default_worker_id)
    clock: Callable[[], float] = time.time
    # Set whenever new jobs are enqueued in this process, so idle workers look at once.
    work_available: anyio.Event = field(default_factory=anyio.Event)
    stats: dict[str, int] = field(default_factory=dict)
    # (stat name, error class) -> count, for "parts failed/retried by reason" metrics.
    reasons: dict[tuple[str, str], int] = field(default_factory=dict)

    def wake_workers(self) -> None:
        self.work_available.set()
        self.work_available = anyio.Event()

    def count(self, name: str, amount: int = 1, *, reason: str | None = None) -> None:
        self.stats[name] = self.stats.get(name, 0) + amount
        # Failures and retries are counted inside the runner's ``except`` blocks: without an
        # explicit reason, the class of the exception being handled is the reason.
        handled = sys.exc_info()[1]
        if reason is None and handled is not None:
            reason = type(handled).__name__
        if reason is not None:
            key = (name, reason)
            self.reasons[key] = self.reasons.get(key, 0) + amount
