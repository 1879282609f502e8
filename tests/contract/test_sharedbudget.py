"""Two API rate limiters (two hosts) spending one budget kept in the job store."""

from __future__ import annotations

import pytest

from downloader.recall.ratelimit import EndpointClass, RateLimiter
from downloader.sharedbudget import StoreRateBudget
from downloader.store import JobStore
from downloader.store.ratebudget import rate_budget
from downloader.store.testing import FakeClock

pytestmark = pytest.mark.anyio

LIMITS = {EndpointClass.LIST: 3, EndpointClass.RETRIEVE: 10}
WINDOW = 60.0
MARGIN = 1.0


def host(store: JobStore, clock: FakeClock, slept: list[float]) -> RateLimiter:
    async def sleep(seconds: float) -> None:  # time passes for every host alike
        slept.append(seconds)
        clock.advance(seconds)

    return RateLimiter(
        LIMITS,
        WINDOW,
        clock,
        margin_seconds=MARGIN,
        budget=StoreRateBudget(rate_budget(store)),
        budget_clock=clock,
        sleep=sleep,
    )


async def test_hosts_share_one_window(store: JobStore, clock: FakeClock) -> None:
    slept_a: list[float] = []
    slept_b: list[float] = []
    a, b = host(store, clock, slept_a), host(store, clock, slept_b)
    for _ in range(2):
        await a.acquire(EndpointClass.LIST)
    await b.acquire(EndpointClass.LIST)
    assert slept_a == slept_b == []

    await b.acquire(EndpointClass.LIST)  # the fourth list request across both hosts waits
    assert sum(slept_b) == pytest.approx(WINDOW + MARGIN)
    await a.acquire(EndpointClass.RETRIEVE)  # another class is not held back
    assert slept_a == []


async def test_a_429_on_one_host_pauses_the_class_on_every_host(
    store: JobStore, clock: FakeClock
) -> None:
    slept_b: list[float] = []
    a, b = host(store, clock, []), host(store, clock, slept_b)
    await a.pause(EndpointClass.RETRIEVE, 7.0)
    assert await b.paused_for(EndpointClass.RETRIEVE) == pytest.approx(7.0)
    assert await b.paused_for(EndpointClass.LIST) == 0.0
    await b.acquire(EndpointClass.RETRIEVE)
    assert sum(slept_b) == pytest.approx(7.0)
