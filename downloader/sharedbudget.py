"""The job store's shared rate budget, seen by the API client's limiter.

With several hosts on one PostgreSQL database, Recall's per-workspace limits must be spent
from one budget: every request takes its slot from the database, and a 429 seen by one host
pauses the endpoint class for all. This adapter gives the client's :class:`RateLimiter` that
budget (the limiter keeps its FIFO order and safety margin on top).
"""

from __future__ import annotations

from downloader.recall.ratelimit import EndpointClass
from downloader.store.ratebudget import RateBudget as StoreBudget


class StoreRateBudget:
    """A :class:`downloader.recall.ratelimit.RateBudget` kept in the job store (epoch clock)."""

    def __init__(self, store: StoreBudget) -> None:
        self._store = store

    async def try_acquire(self, cls: EndpointClass, limit: int, window: float) -> float:
        return await self._store.acquire_rate_slot(cls.value, limit, window)

    async def pause(self, cls: EndpointClass, until_epoch: float) -> None:
        await self._store.pause_class(cls.value, until_epoch)

    async def paused_until(self, cls: EndpointClass) -> float:
        return await self._store.paused_until(cls.value) or 0.0
