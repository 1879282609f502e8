"""A request budget shared by every process (SQLite) or every host (PostgreSQL).

Recall's rate limits are per workspace, so hosts sharing work must share one budget: each
API request first asks :meth:`RateBudget.acquire_rate_slot` for its endpoint class
(e.g. "list" 60/min, "retrieve" 300/min). The store keeps a sliding-window log of recent
requests per class; a request goes only when fewer than ``limit`` were made in the last
``window_seconds``, otherwise the caller learns how long to wait (and asks again then).
A 429 seen by any host pauses the class for all through :meth:`RateBudget.pause_class`.

Both job stores implement this protocol; get it from a store with :func:`rate_budget`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable


@runtime_checkable
class RateBudget(Protocol):
    async def acquire_rate_slot(self, cls: str, limit: int, window_seconds: float) -> float:
        """0.0 when a request of ``cls`` may go now (and it is recorded); else seconds to wait.

        Waiting callers record nothing, so asking again after the wait is always fair.
        """
        ...

    async def pause_class(self, cls: str, until: float) -> None:
        """No request of ``cls`` goes before ``until`` (epoch seconds); never shortens a pause.

        With several hosts ``until`` comes from the caller's clock: hosts are assumed to be
        NTP-synchronised well within a Retry-After (seconds).
        """
        ...

    async def paused_until(self, cls: str) -> float | None:
        """When the current pause of ``cls`` ends, or None if it was never paused."""
        ...


def rate_budget(store: object) -> RateBudget:
    """The store as a RateBudget (both built-in stores are one)."""
    if not isinstance(store, RateBudget):
        raise TypeError(f"{type(store).__name__} does not provide a shared rate budget")
    return store


def check_rate_args(limit: int, window_seconds: float) -> None:
    if limit < 1:
        raise ValueError(f"limit must be >= 1, got {limit}")
    if not window_seconds > 0:
        raise ValueError(f"window_seconds must be > 0, got {window_seconds}")


def slot_wait(recent: Sequence[float], limit: int, window_seconds: float, now: float) -> float:
    """Seconds until a request may go, given the sorted times of requests still in the window.

    The request may go once only ``limit - 1`` of them remain, i.e. when the
    ``len(recent) - limit + 1``-th oldest ages out at its time + window.
    """
    if len(recent) < limit:
        return 0.0
    return recent[len(recent) - limit] + window_seconds - now
