"""Concurrency bounds for part transfers: global, per media host, per recording."""

from __future__ import annotations

from collections.abc import AsyncIterator, Hashable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import anyio

GLOBAL_LIMIT = 8
PER_HOST_LIMIT = 8
PER_RECORDING_LIMIT = 4


async def _acquire(limiter: anyio.CapacityLimiter) -> None:
    """Take a token without a trip through the event loop when one is free (a part takes
    three of them; anyio's ``acquire`` always yields first). Waiters keep their turn:
    ``acquire_nowait`` refuses while anyone is queued."""
    try:
        limiter.acquire_nowait()
    except anyio.WouldBlock:
        await limiter.acquire()


@dataclass
class _Keyed:
    """One CapacityLimiter per key, dropped when nobody holds or waits for it."""

    tokens: int
    limiters: dict[Hashable, tuple[anyio.CapacityLimiter, int]] = field(default_factory=dict)

    def join(self, key: Hashable) -> anyio.CapacityLimiter:
        """The key's limiter, counted as used until ``leave``."""
        limiter, users = self.limiters.get(key, (None, 0))
        if limiter is None:
            limiter = anyio.CapacityLimiter(self.tokens)
        self.limiters[key] = (limiter, users + 1)
        return limiter

    def leave(self, key: Hashable) -> None:
        limiter, users = self.limiters[key]
        if users <= 1:
            del self.limiters[key]
        else:
            self.limiters[key] = (limiter, users - 1)


@dataclass
class TransferLimits:
    """``async with limits.slot(host, recording_id):`` around one part transfer.

    Acquired from the most specific to the least (recording, host, global), always in that
    order, so a part waiting for its recording's turn does not hold a global slot.
    """

    global_limit: int = GLOBAL_LIMIT
    per_host: int = PER_HOST_LIMIT
    per_recording: int = PER_RECORDING_LIMIT

    def __post_init__(self) -> None:
        if min(self.global_limit, self.per_host, self.per_recording) < 1:
            raise ValueError("transfer limits must be at least 1")
        self._global = anyio.CapacityLimiter(self.global_limit)
        self._hosts = _Keyed(self.per_host)
        self._recordings = _Keyed(self.per_recording)

    @asynccontextmanager
    async def slot(self, host: str, recording_id: Hashable) -> AsyncIterator[None]:
        host = host.lower()
        limiters = (
            self._recordings.join(recording_id),
            self._hosts.join(host),
            self._global,
        )
        taken: list[anyio.CapacityLimiter] = []
        try:
            for limiter in limiters:
                await _acquire(limiter)
                taken.append(limiter)
            yield
        finally:
            for limiter in reversed(taken):
                limiter.release()
            self._hosts.leave(host)
            self._recordings.leave(recording_id)

    @property
    def in_flight(self) -> int:
        return int(self._global.borrowed_tokens)
