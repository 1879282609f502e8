"""Concurrency bounds for part transfers: global, per media host, per recording."""

from __future__ import annotations

from collections.abc import AsyncIterator, Hashable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import anyio

GLOBAL_LIMIT = 8
PER_HOST_LIMIT = 8
PER_RECORDING_LIMIT = 4


@dataclass
class _Keyed:
    """One CapacityLimiter per key, dropped when nobody holds or waits for it."""

    tokens: int
    limiters: dict[Hashable, tuple[anyio.CapacityLimiter, int]] = field(default_factory=dict)

    @asynccontextmanager
    async def hold(self, key: Hashable) -> AsyncIterator[None]:
        limiter, users = self.limiters.get(key, (None, 0))
        if limiter is None:
            limiter = anyio.CapacityLimiter(self.tokens)
        self.limiters[key] = (limiter, users + 1)
        try:
            async with limiter:
                yield
        finally:
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
        async with (
            self._recordings.hold(recording_id),
            self._hosts.hold(host.lower()),
            self._global,
        ):
            yield

    @property
    def in_flight(self) -> int:
        return int(self._global.borrowed_tokens)
