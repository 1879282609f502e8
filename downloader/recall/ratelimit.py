"""Client-side rate limiting for the Recall API: a sliding window per endpoint class.

Recall's API is built on Django REST Framework, whose throttles count the requests of the
last ``window`` seconds. A token bucket would burst its full capacity and then keep refilling,
so some 60-second window would hold more than the limit; a sliding window never does.

Three layers:

* :class:`SlidingWindow` — the pure decision: remember the send times of the last ``limit``
  requests; a new one may go when the oldest of them is at least ``window`` old.
* :class:`RateBudget` — where those send times and 429 pauses live. :class:`LocalRateBudget`
  keeps them in this process; a shared implementation (PostgreSQL, several hosts) plugs in
  through the same protocol.
* :class:`RateLimiter` — the async wrapper every task of the process shares: FIFO per class
  (only the head waiter sleeps, so there is no thundering herd and no busy loop), a safety
  margin on the window because the server timestamps on arrival while we record at send
  time, and 429 pauses.
"""

from __future__ import annotations

import enum
import time
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import anyio
import structlog

if TYPE_CHECKING:
    from downloader.config import Settings

log = structlog.get_logger(__name__)

Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[None]]

MIN_MARGIN_SECONDS = 0.2  # a loaded host can delay a recorded send by 100+ ms on the wire
MARGIN_FRACTION = 0.01


class EndpointClass(enum.StrEnum):
    """Recall rate-limits list endpoints (60/min) and retrieve endpoints (300/min) separately."""

    LIST = "list"
    RETRIEVE = "retrieve"


def default_margin(window_seconds: float) -> float:
    """1 % of the window, at least 200 ms (0.6 s for Recall's 60 s window)."""
    return max(MIN_MARGIN_SECONDS, MARGIN_FRACTION * window_seconds)


class SlidingWindow:
    """Pure sliding-window decision for one endpoint class.

    Invariant: for the recorded send times ``t``, ``t[i + limit] - t[i] >= window`` for every
    ``i``, i.e. no half-open interval of length ``window`` holds more than ``limit`` sends.
    """

    __slots__ = ("_sent", "limit", "window")

    def __init__(self, limit: int, window: float) -> None:
        if limit < 1:
            raise ValueError("limit must be at least 1")
        if window <= 0:
            raise ValueError("window must be positive")
        self.limit = limit
        self.window = window
        self._sent: deque[float] = deque(maxlen=limit)

    def delay(self, now: float) -> float:
        """Seconds until a request may be sent (0 when it may go now)."""
        if len(self._sent) < self.limit:
            return 0.0
        return max(0.0, self._sent[0] + self.window - now)

    def record(self, now: float) -> None:
        self._sent.append(now)

    def try_acquire(self, now: float) -> float:
        """Record a send at ``now`` and return 0, or return the seconds still to wait."""
        wait = self.delay(now)
        if wait <= 0.0:
            self.record(now)
            return 0.0
        return wait

    def resized(self, limit: int, window: float) -> SlidingWindow:
        """The same history under new settings (keeps the most recent sends)."""
        other = SlidingWindow(limit, window)
        for sent in list(self._sent)[-limit:]:
            other.record(sent)
        return other

    @property
    def sent_times(self) -> tuple[float, ...]:
        return tuple(self._sent)


@runtime_checkable
class RateBudget(Protocol):
    """Where send times and pauses are kept; shared by every task (or every host) using it.

    Times are on the budget's own clock: wall-clock epoch seconds for a budget shared between
    hosts, the limiter's clock for the in-process one.
    """

    async def try_acquire(self, cls: EndpointClass, limit: int, window: float) -> float:
        """Record a send now and return 0, or return the seconds to wait (nothing recorded)."""
        ...

    async def pause(self, cls: EndpointClass, until_epoch: float) -> None:
        """Send nothing of ``cls`` before ``until_epoch`` (a pause never shortens)."""
        ...

    async def paused_until(self, cls: EndpointClass) -> float:
        """The end of the current pause of ``cls`` (0 or a past time when not paused)."""
        ...


class LocalRateBudget:
    """The in-process :class:`RateBudget`."""

    def __init__(self, clock: Clock = time.monotonic) -> None:
        self.clock = clock
        self._windows: dict[EndpointClass, SlidingWindow] = {}
        self._paused: dict[EndpointClass, float] = {}

    async def try_acquire(self, cls: EndpointClass, limit: int, window: float) -> float:
        return self.try_acquire_now(cls, limit, window)

    def try_acquire_now(self, cls: EndpointClass, limit: int, window: float) -> float:
        current = self._windows.get(cls)
        if current is None:
            current = self._windows[cls] = SlidingWindow(limit, window)
        elif current.limit != limit or current.window != window:
            current = self._windows[cls] = current.resized(limit, window)
        return current.try_acquire(self.clock())

    async def pause(self, cls: EndpointClass, until_epoch: float) -> None:
        self._paused[cls] = max(self._paused.get(cls, 0.0), until_epoch)

    async def paused_until(self, cls: EndpointClass) -> float:
        return self._paused.get(cls, 0.0)

    def sent_times(self, cls: EndpointClass) -> tuple[float, ...]:
        current = self._windows.get(cls)
        return current.sent_times if current is not None else ()


class RateLimiter:
    """Per-workspace limiter shared by every task of the process.

    ``limits`` maps each :class:`EndpointClass` to its requests per ``window_seconds``.
    ``acquire`` returns when a request of that class may be sent *now* and records it, so
    call it immediately before sending. ``pause`` (after a 429) holds the class back.
    """

    def __init__(
        self,
        limits: Mapping[EndpointClass, int],
        window_seconds: float = 60.0,
        clock: Clock = time.monotonic,
        *,
        margin_seconds: float | None = None,
        budget: RateBudget | None = None,
        budget_clock: Clock = time.time,
        sleep: Sleep = anyio.sleep,
    ) -> None:
        missing = [cls.value for cls in EndpointClass if cls not in limits]
        if missing:
            raise ValueError(f"no rate limit for endpoint class(es) {', '.join(missing)}")
        if any(limit < 1 for limit in limits.values()):
            raise ValueError("rate limits must be at least 1")
        if window_seconds <= 0:
            raise ValueError("window_seconds must be positive")
        self.limits = dict(limits)
        self.window_seconds = window_seconds
        self.margin_seconds = (
            default_margin(window_seconds) if margin_seconds is None else margin_seconds
        )
        if budget is None:
            # The in-process budget runs on our clock, so pauses are on the same time line.
            budget = LocalRateBudget(clock)
            budget_clock = clock
        self.budget = budget
        self._budget_clock = budget_clock
        self._sleep = sleep
        self._locks = {cls: anyio.Lock() for cls in EndpointClass}
        self.acquired: dict[EndpointClass, int] = dict.fromkeys(EndpointClass, 0)
        self.pauses: dict[EndpointClass, int] = dict.fromkeys(EndpointClass, 0)

    @classmethod
    def from_settings(cls, settings: Settings, **kwargs: Any) -> RateLimiter:
        """The configured limits (``list_rate_limit``, ``retrieve_rate_limit``) and window."""
        return cls(
            {
                EndpointClass.LIST: settings.list_rate_limit,
                EndpointClass.RETRIEVE: settings.retrieve_rate_limit,
            },
            settings.rate_window_seconds,
            **kwargs,
        )

    @property
    def effective_window(self) -> float:
        return self.window_seconds + self.margin_seconds

    async def acquire(self, cls: EndpointClass) -> None:
        """Wait (FIFO) until a request of ``cls`` may be sent, and record it as sent now."""
        async with self._locks[cls]:
            while True:
                remaining = await self.paused_for(cls)
                if remaining > 0:
                    await self._sleep(remaining)
                    continue
                wait = await self.budget.try_acquire(cls, self.limits[cls], self.effective_window)
                if wait <= 0:
                    self.acquired[cls] += 1
                    return
                log.debug("api_rate_wait", endpoint_class=cls.value, seconds=round(wait, 3))
                await self._sleep(wait)

    async def pause(self, cls: EndpointClass, seconds: float) -> None:
        """Send no request of ``cls`` for ``seconds`` from now (e.g. a 429's Retry-After)."""
        self.pauses[cls] += 1
        await self.budget.pause(cls, self._budget_clock() + max(0.0, seconds))

    async def paused_for(self, cls: EndpointClass) -> float:
        """Seconds left in the current pause of ``cls`` (0 when not paused)."""
        return max(0.0, await self.budget.paused_until(cls) - self._budget_clock())
