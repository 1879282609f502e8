"""The sweep's window, cursor and single-holder lease, with a fake discover and a real store."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import pytest

from downloader.errors import RetryLater
from downloader.service.sweep import (
    FIRST_SWEEP_LOOKBACK_SECONDS,
    LEASE_CURSOR,
    SINCE_CURSOR,
    release_lease,
    sweep_loop,
    sweep_once,
)
from downloader.store import JobStore, open_store

pytestmark = pytest.mark.anyio
T0 = 1_750_000_000.0


@dataclass
class FakeCtx:
    """The parts of PipelineContext the sweep uses."""

    store: JobStore
    worker: str = "host-a:1"
    now: float = T0
    woken: int = 0

    def clock(self) -> float:
        return self.now

    def wake_workers(self) -> None:
        self.woken += 1


@dataclass(frozen=True)
class Result:
    new: int


@dataclass
class FakeDiscover:
    new: int = 1
    fail: bool = False
    calls: list[tuple[dt.datetime, dt.datetime | None, str | None]] = field(default_factory=list)
    called: anyio.Event = field(default_factory=anyio.Event)

    async def __call__(
        self,
        ctx: Any,
        *,
        since: dt.datetime,
        until: dt.datetime | None,
        cursor_name: str | None = None,
    ) -> Result:
        self.calls.append((since, until, cursor_name))
        self.called.set()
        if self.fail:
            raise RetryLater("503 from Recall")
        return Result(self.new)


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[JobStore]:
    opened = await open_store(str(tmp_path / "state.db"))
    try:
        yield opened
    finally:
        await opened.close()


def utc(epoch: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(epoch, tz=dt.UTC)


async def test_window_moves_with_an_overlap(store: JobStore) -> None:
    ctx: Any = FakeCtx(store)
    discover = FakeDiscover()
    first = await sweep_once(ctx, discover, interval=600, overlap=300)
    assert first is not None and first.enqueued == 1 and ctx.woken == 1
    assert discover.calls[0] == (utc(T0 - FIRST_SWEEP_LOOKBACK_SECONDS), None, "sweep_page")
    assert await store.get_cursor(SINCE_CURSOR) == utc(T0).isoformat()

    ctx.now = T0 + 600
    await sweep_once(ctx, discover, interval=600, overlap=300)
    assert discover.calls[1][0] == utc(T0 - 300)


async def test_a_failed_round_keeps_the_window(store: JobStore) -> None:
    ctx: Any = FakeCtx(store)
    await sweep_once(ctx, FakeDiscover(), interval=600, overlap=60)
    ctx.now = T0 + 600
    with pytest.raises(RetryLater):
        await sweep_once(ctx, FakeDiscover(fail=True), interval=600, overlap=60)
    assert await store.get_cursor(SINCE_CURSOR) == utc(T0).isoformat()
    ctx.now = T0 + 1200
    retry = FakeDiscover()
    await sweep_once(ctx, retry, interval=600, overlap=60)
    assert retry.calls[0][0] == utc(T0 - 60)  # nothing between the two sweeps was skipped


async def test_only_one_process_sweeps(store: JobStore) -> None:
    a: Any = FakeCtx(store, worker="host-a:1")
    b: Any = FakeCtx(store, worker="host-b:2")
    assert await sweep_once(a, FakeDiscover(), interval=600, overlap=60) is not None
    b.now = T0 + 600  # a's lease (2.5 intervals) still runs
    assert await sweep_once(b, FakeDiscover(), interval=600, overlap=60) is None
    b.now = T0 + 1501  # a stopped renewing: b takes over
    assert await sweep_once(b, FakeDiscover(), interval=600, overlap=60) is not None
    assert (await store.get_cursor(LEASE_CURSOR) or "").startswith("host-b:2 ")
    await release_lease(b)
    a.now = b.now
    assert await sweep_once(a, FakeDiscover(), interval=600, overlap=60) is not None


async def test_hosts_racing_for_an_expired_lease_sweep_once(store: JobStore) -> None:
    await store.set_cursor(LEASE_CURSOR, f"host-dead:9 {T0 - 1}")
    hosts: list[Any] = [FakeCtx(store, worker=f"host-{i}:1") for i in range(6)]
    discovers = [FakeDiscover() for _ in hosts]
    results: list[object] = [None] * len(hosts)

    async def one(i: int) -> None:
        results[i] = await sweep_once(hosts[i], discovers[i], interval=600, overlap=60)

    async with anyio.create_task_group() as group:
        for i in range(len(hosts)):
            group.start_soon(one, i)
    assert sum(r is not None for r in results) == 1
    assert sum(len(d.calls) for d in discovers) == 1


async def test_loop_survives_api_errors_and_follows_interval_changes(store: JobStore) -> None:
    ctx: Any = FakeCtx(store)
    discover = FakeDiscover(fail=True)
    rounds: list[tuple[object, object]] = []
    round_done = [anyio.Event()]
    interval = [3600.0]
    wake = [anyio.Event()]

    def on_round(done: object, error: object) -> None:
        rounds.append((done, error))
        round_done[0].set()

    async with anyio.create_task_group() as group:
        group.start_soon(
            lambda: sweep_loop(
                ctx,
                discover,
                interval=lambda: interval[0],
                overlap=lambda: 60.0,
                wake=lambda: wake[0],
                on_round=on_round,
            )
        )
        with anyio.fail_after(10):
            await round_done[0].wait()
            round_done[0] = anyio.Event()
            discover.fail = False
            # A SIGHUP shortens the interval: the loop measures its wait again at once.
            interval[0] = 0.01
            changed, wake[0] = wake[0], anyio.Event()
            changed.set()
            await round_done[0].wait()
        group.cancel_scope.cancel()
    assert isinstance(rounds[0][1], RetryLater)
    assert rounds[1][0] is not None and rounds[1][1] is None
