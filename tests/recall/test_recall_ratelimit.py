"""The sliding window (pure, property-tested) and the async RateLimiter wrapper."""

from __future__ import annotations

import time

import anyio
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from downloader.recall import (
    EndpointClass,
    LocalRateBudget,
    RateBudget,
    RateLimiter,
    SlidingWindow,
)
from downloader.recall.ratelimit import default_margin

EPS = 1e-9


def window_violations(times: list[float], limit: int, window: float) -> list[int]:
    """Indices i where sends i and i+limit fall inside one window (limit+1 in a window)."""
    ordered = sorted(times)
    return [
        i for i in range(len(ordered) - limit) if ordered[i + limit] - ordered[i] < window - EPS
    ]


def simulate(arrivals: list[float], limit: int, window: float) -> list[float]:
    """FIFO requests through the pure window: each goes at the first allowed instant."""
    sliding = SlidingWindow(limit, window)
    sent: list[float] = []
    now = 0.0
    for arrival in arrivals:
        now = max(now, arrival)
        while (wait := sliding.try_acquire(now)) > 0:
            now += wait
        sent.append(now)
    return sent


@settings(max_examples=300, deadline=None)
@given(
    limit=st.integers(min_value=1, max_value=12),
    window=st.floats(min_value=0.01, max_value=120.0, allow_nan=False),
    gaps=st.lists(st.floats(min_value=0.0, max_value=30.0, allow_nan=False), max_size=80),
)
def test_no_window_ever_holds_more_than_the_limit(
    limit: int, window: float, gaps: list[float]
) -> None:
    arrivals: list[float] = []
    t = 0.0
    for gap in gaps:
        t += gap
        arrivals.append(t)
    sent = simulate(arrivals, limit, window)
    assert window_violations(sent, limit, window) == []
    # ...and no request waits longer than needed: it goes at its arrival, right after the
    # previous one, or exactly when the send `limit` places earlier leaves the window.
    for i, (arrival, at) in enumerate(zip(arrivals, sent, strict=True)):
        earliest = max(arrival, sent[i - 1] if i else arrival)
        if i >= limit:
            earliest = max(earliest, sent[i - limit] + window)
        assert at == pytest.approx(earliest, abs=1e-6)


def test_burst_then_waits_for_the_oldest_to_leave() -> None:
    sliding = SlidingWindow(3, 10.0)
    assert [sliding.try_acquire(0.0) for _ in range(3)] == [0.0, 0.0, 0.0]
    assert sliding.try_acquire(4.0) == pytest.approx(6.0)
    assert sliding.delay(9.999) > 0
    assert sliding.try_acquire(10.0) == 0.0
    assert sliding.try_acquire(10.0) == pytest.approx(0.0)  # second of the burst left too
    assert sliding.sent_times == (0.0, 10.0, 10.0)


def test_a_token_bucket_pattern_is_refused() -> None:
    """Full burst at t=0, then one request per refill interval: the window says no."""
    sliding = SlidingWindow(60, 60.0)
    for _ in range(60):
        assert sliding.try_acquire(0.0) == 0.0
    assert sliding.try_acquire(1.0) == pytest.approx(59.0)


def test_resize_keeps_recent_history() -> None:
    sliding = SlidingWindow(4, 10.0)
    for t in (0.0, 1.0, 2.0, 3.0):
        sliding.record(t)
    smaller = sliding.resized(2, 10.0)
    assert smaller.sent_times == (2.0, 3.0)
    assert smaller.delay(3.0) == pytest.approx(9.0)


def test_margin_defaults() -> None:
    assert default_margin(60.0) == pytest.approx(0.6)
    assert default_margin(2.0) == pytest.approx(0.2)


def test_invalid_construction() -> None:
    with pytest.raises(ValueError, match="limit"):
        SlidingWindow(0, 1.0)
    with pytest.raises(ValueError, match="no rate limit"):
        RateLimiter({EndpointClass.LIST: 1})
    assert isinstance(LocalRateBudget(), RateBudget)


class FakeTime:
    """A clock whose sleep advances it: the limiter runs instantly but 'waits' correctly."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds
        await anyio.lowlevel.checkpoint()


def fake_limiter(fake: FakeTime, list_limit: int = 5, retrieve_limit: int = 20) -> RateLimiter:
    return RateLimiter(
        {EndpointClass.LIST: list_limit, EndpointClass.RETRIEVE: retrieve_limit},
        window_seconds=10.0,
        clock=fake.clock,
        margin_seconds=0.5,
        sleep=fake.sleep,
    )


@pytest.mark.anyio
async def test_concurrent_tasks_are_served_fifo_within_the_window() -> None:
    fake = FakeTime()
    limiter = fake_limiter(fake)
    order: list[tuple[int, float]] = []

    async def task(i: int) -> None:
        await limiter.acquire(EndpointClass.LIST)
        order.append((i, fake.now))

    async with anyio.create_task_group() as tg:
        for i in range(23):
            tg.start_soon(task, i)
    assert [i for i, _ in order] == list(range(23))
    times = [t for _, t in order]
    assert window_violations(times, 5, 10.5) == []
    assert times[-1] - times[0] == pytest.approx(4 * 10.5)  # 23 requests = 5 windows
    # Only the head of the queue ever sleeps: one sleep per window, no herd, no spinning.
    assert len(fake.sleeps) == 4
    assert limiter.acquired[EndpointClass.LIST] == 23


@pytest.mark.anyio
async def test_pause_holds_back_only_its_class() -> None:
    fake = FakeTime()
    limiter = fake_limiter(fake)
    start = fake.now
    await limiter.pause(EndpointClass.LIST, 7.0)
    await limiter.pause(EndpointClass.LIST, 2.0)  # never shortens a pause
    assert await limiter.paused_for(EndpointClass.LIST) == pytest.approx(7.0)
    await limiter.acquire(EndpointClass.RETRIEVE)
    assert fake.now == start
    await limiter.acquire(EndpointClass.LIST)
    assert fake.now == pytest.approx(start + 7.0)
    assert await limiter.paused_for(EndpointClass.LIST) == 0.0
    assert limiter.pauses[EndpointClass.LIST] == 2


@pytest.mark.anyio
async def test_limiters_sharing_one_budget_share_the_limit() -> None:
    """Two processes' limiters on one budget (as the PostgreSQL budget will be)."""
    fake = FakeTime()
    budget = LocalRateBudget(fake.clock)
    kwargs = {"margin_seconds": 0.0, "sleep": fake.sleep, "budget_clock": fake.clock}
    limits = {EndpointClass.LIST: 4, EndpointClass.RETRIEVE: 4}
    one = RateLimiter(limits, 10.0, fake.clock, budget=budget, **kwargs)  # type: ignore[arg-type]
    two = RateLimiter(limits, 10.0, fake.clock, budget=budget, **kwargs)  # type: ignore[arg-type]
    times: list[float] = []

    async def use(limiter: RateLimiter) -> None:
        for _ in range(6):
            await limiter.acquire(EndpointClass.LIST)
            times.append(fake.now)

    async with anyio.create_task_group() as tg:
        tg.start_soon(use, one)
        tg.start_soon(use, two)
    assert len(times) == 12
    assert window_violations(times, 4, 10.0) == []
    await one.pause(EndpointClass.RETRIEVE, 3.0)
    assert await two.paused_for(EndpointClass.RETRIEVE) == pytest.approx(3.0)


@pytest.mark.anyio
async def test_real_clock_smoke() -> None:
    limiter = RateLimiter(
        {EndpointClass.LIST: 3, EndpointClass.RETRIEVE: 3}, window_seconds=0.2, margin_seconds=0.02
    )
    times: list[float] = []

    async def task() -> None:
        await limiter.acquire(EndpointClass.LIST)
        times.append(time.monotonic())

    async with anyio.create_task_group() as tg:
        for _ in range(7):
            tg.start_soon(task)
    assert window_violations(times, 3, 0.22) == []
    assert max(times) - min(times) >= 0.44 - 0.01
