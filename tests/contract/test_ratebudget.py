"""The shared request budget: a sliding window per endpoint class, and pauses after a 429."""

from __future__ import annotations

import json
import sys

import anyio
import pytest

from downloader.store import JobStore
from downloader.store.ratebudget import RateBudget, rate_budget
from downloader.store.testing import FakeClock

pytestmark = pytest.mark.anyio

WINDOW = 60.0


@pytest.fixture
def budget(store: JobStore) -> RateBudget:
    return rate_budget(store)


async def acquire_all(budget: RateBudget, n: int, cls: str = "list", limit: int = 3) -> list[float]:
    return [await budget.acquire_rate_slot(cls, limit, WINDOW) for _ in range(n)]


async def test_requests_within_the_limit_go_at_once(budget: RateBudget) -> None:
    assert await acquire_all(budget, 3) == [0.0, 0.0, 0.0]


async def test_over_the_limit_waits_until_the_oldest_ages_out(
    budget: RateBudget, clock: FakeClock
) -> None:
    await budget.acquire_rate_slot("list", 3, WINDOW)
    clock.advance(10)
    await acquire_all(budget, 2)
    clock.advance(5)

    assert await budget.acquire_rate_slot("list", 3, WINDOW) == pytest.approx(WINDOW - 15)
    # Asking again while waiting records nothing, so the answer does not grow.
    assert await budget.acquire_rate_slot("list", 3, WINDOW) == pytest.approx(WINDOW - 15)

    clock.advance(WINDOW - 15)  # the first request leaves the window exactly now
    assert await budget.acquire_rate_slot("list", 3, WINDOW) == 0.0
    assert await budget.acquire_rate_slot("list", 3, WINDOW) == pytest.approx(10)


async def test_classes_have_separate_budgets(budget: RateBudget) -> None:
    await acquire_all(budget, 3, "list")
    assert await budget.acquire_rate_slot("list", 3, WINDOW) > 0
    assert await budget.acquire_rate_slot("retrieve", 3, WINDOW) == 0.0


async def test_a_pause_holds_every_request_of_its_class(
    budget: RateBudget, clock: FakeClock
) -> None:
    assert await budget.paused_until("list") is None
    await budget.pause_class("list", clock() + 30)

    assert await budget.paused_until("list") == clock() + 30
    assert await budget.acquire_rate_slot("list", 3, WINDOW) == pytest.approx(30)
    assert await budget.acquire_rate_slot("retrieve", 3, WINDOW) == 0.0

    await budget.pause_class("list", clock() + 5)  # a shorter pause does not shorten it
    assert await budget.paused_until("list") == clock() + 30

    clock.advance(30)
    assert await acquire_all(budget, 3) == [0.0, 0.0, 0.0]


async def test_concurrent_tasks_share_one_budget(budget: RateBudget) -> None:
    waits: list[float] = []

    async def one() -> None:
        waits.append(await budget.acquire_rate_slot("list", 5, WINDOW))

    async with anyio.create_task_group() as tg:
        for _ in range(20):
            tg.start_soon(one)
    assert sorted(waits)[:6] == [0.0] * 5 + [pytest.approx(WINDOW)]


# Another process asking for slots with the real clock (the window is long enough that
# none of its own requests age out during the test).
CHILD = """
import asyncio, json, sys
from downloader.store import open_store
from downloader.store.ratebudget import rate_budget

async def main(url):
    store = await open_store(url)
    try:
        budget = rate_budget(store)
        waits = [await budget.acquire_rate_slot("retrieve", 10, 3600) for _ in range(8)]
        print(json.dumps(waits))
    finally:
        await store.close()

asyncio.run(main(sys.argv[1]))
"""


@pytest.mark.slow
async def test_processes_share_one_budget(store_url: str, store: JobStore) -> None:
    results: list[list[float]] = []

    async def child() -> None:
        done = await anyio.run_process([sys.executable, "-c", CHILD, store_url])
        results.append(json.loads(done.stdout))

    with anyio.fail_after(60):
        async with anyio.create_task_group() as tg:
            for _ in range(4):
                tg.start_soon(child)
    waits = [w for got in results for w in got]
    assert len(waits) == 32
    assert waits.count(0.0) == 10


async def test_bad_arguments_are_refused(budget: RateBudget) -> None:
    with pytest.raises(ValueError, match="limit"):
        await budget.acquire_rate_slot("list", 0, WINDOW)
    with pytest.raises(ValueError, match="window"):
        await budget.acquire_rate_slot("list", 1, 0)


def test_only_stores_with_a_budget_are_accepted() -> None:
    with pytest.raises(TypeError):
        rate_budget(object())
