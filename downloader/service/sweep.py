"""The sweep: every ``sweep_interval_seconds``, list what finished since the last sweep.

Webhooks can be lost (an endpoint down for longer than Svix retries, a workspace without
webhooks at all). The sweep lists ``video_separate`` with ``status_code=done`` created since
the previous sweep, minus an overlap margin, and queues what is new, so that a lost webhook
never means a lost recording. Jobs are keyed by remote id, so sweeping a window twice queues
nothing twice.

State in the store (cursors):

* ``sweep_since`` — when the last *successful* sweep started (ISO 8601, UTC). The next one
  lists from that instant minus ``sweep_overlap_seconds`` (clock skew between us and Recall,
  and objects whose ``created_at`` precedes their ``done``). The first sweep ever looks back
  :data:`FIRST_SWEEP_LOOKBACK_SECONDS`.
* ``sweep_lease`` — ``"<worker> <epoch-until>"``: the one process allowed to sweep. Taken
  and renewed with a compare-and-set (``swap_cursor``), so of several hosts sharing one
  PostgreSQL database that read the same expired lease, exactly one sweeps.

A transient API failure ends one round (logged, counted) and the next round tries again; an
authentication error or a bug propagates and stops the service.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

import anyio
import structlog

from downloader.errors import JobFailed, RetryLater
from downloader.pipeline.context import PipelineContext

log = structlog.get_logger(__name__)

SINCE_CURSOR = "sweep_since"
LEASE_CURSOR = "sweep_lease"
PAGE_CURSOR = "sweep_page"
FIRST_SWEEP_LOOKBACK_SECONDS = 24 * 3600.0
LEASE_INTERVALS = 2.5  # a sweep lease outlives one missed round, not two


class Discover(Protocol):
    """``downloader.discovery.discover``: list done video_separate in a window, queue the new."""

    def __call__(
        self,
        ctx: PipelineContext,
        *,
        since: dt.datetime,
        until: dt.datetime | None,
        cursor_name: str | None = None,
    ) -> Awaitable[Any]: ...


@dataclass(frozen=True)
class SweepRound:
    since: dt.datetime
    started: dt.datetime
    enqueued: int


def _utc(epoch: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(epoch, tz=dt.UTC)


def _enqueued(result: Any) -> int:
    """How many jobs a DiscoveryResult says were new (tolerant of its exact shape)."""
    for name in ("enqueued", "new_jobs", "new"):
        value = getattr(result, name, None)
        if isinstance(value, int):
            return value
    return 0


async def _take_lease(ctx: PipelineContext, seconds: float) -> bool:
    now = ctx.clock()
    raw = await ctx.store.get_cursor(LEASE_CURSOR)
    if raw:
        holder, _, until = raw.rpartition(" ")
        try:
            expired = float(until) < now
        except ValueError:
            expired = True
        if holder != ctx.worker and not expired:
            return False
    return await ctx.store.swap_cursor(LEASE_CURSOR, raw, f"{ctx.worker} {now + seconds}")


async def release_lease(ctx: PipelineContext) -> None:
    """Give the sweep to another process at once (on a clean shutdown)."""
    raw = await ctx.store.get_cursor(LEASE_CURSOR)
    if raw and raw.rpartition(" ")[0] == ctx.worker:
        await ctx.store.swap_cursor(LEASE_CURSOR, raw, f"{ctx.worker} 0")


async def sweep_once(
    ctx: PipelineContext,
    discover: Discover,
    *,
    interval: float,
    overlap: float,
    lookback: float = FIRST_SWEEP_LOOKBACK_SECONDS,
) -> SweepRound | None:
    """One round; None when another process holds the sweep."""
    if not await _take_lease(ctx, interval * LEASE_INTERVALS):
        log.debug("sweep_skipped_other_holder")
        return None
    started = _utc(ctx.clock())
    last = await ctx.store.get_cursor(SINCE_CURSOR)
    since = (
        dt.datetime.fromisoformat(last) - dt.timedelta(seconds=overlap)
        if last
        else started - dt.timedelta(seconds=lookback)
    )
    result = await discover(ctx, since=since, until=None, cursor_name=PAGE_CURSOR)
    await ctx.store.set_cursor(SINCE_CURSOR, started.isoformat())
    enqueued = _enqueued(result)
    if enqueued:
        ctx.wake_workers()
    log.info("sweep_done", since=since.isoformat(), enqueued=enqueued)
    return SweepRound(since=since, started=started, enqueued=enqueued)


async def sweep_loop(
    ctx: PipelineContext,
    discover: Discover,
    *,
    interval: Callable[[], float],
    overlap: Callable[[], float],
    wake: Callable[[], anyio.Event],
    on_round: Callable[[SweepRound | None, BaseException | None], None] = lambda r, e: None,
) -> None:
    """Sweep now, then every ``interval()`` seconds (re-read each round: SIGHUP may change it).

    ``wake()`` returns an event that is set when the settings change; the wait for the next
    round is then measured again with the new interval.
    """
    while True:
        started = anyio.current_time()
        try:
            done = await sweep_once(ctx, discover, interval=interval(), overlap=overlap())
        except (RetryLater, JobFailed) as exc:
            log.warning("sweep_failed", error=exc.reason)
            on_round(None, exc)
        else:
            on_round(done, None)
        while (remaining := started + interval() - anyio.current_time()) > 0:
            event = wake()
            with anyio.move_on_after(remaining):
                await event.wait()
