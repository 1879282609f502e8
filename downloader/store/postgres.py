"""The PostgreSQL job store (several hosts): being written; not usable yet."""

from __future__ import annotations

from collections.abc import Callable

from downloader.errors import ConfigError
from downloader.store.protocol import JobStore


class PostgresStore:
    @classmethod
    async def open(cls, url: str, *, clock: Callable[[], float] | None = None) -> JobStore:
        raise ConfigError("the PostgreSQL job store is not available yet")
