"""The simulator's notion of "now", in integer microseconds of wall-clock time.

Times are integers so that a timestamp rendered as ISO-8601 (microsecond precision) and
parsed back by a filter compares exactly equal to the object it came from. The clock is
driven by ``time.monotonic`` (immune to wall-clock steps) and can be advanced by tests to
expire URLs or finish lifecycles without sleeping.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime

US = 1_000_000


class SimClock:
    def __init__(self) -> None:
        self._mono0 = time.monotonic()
        self._wall0_us = time.time_ns() // 1000
        self._advanced_us = 0

    def now_us(self) -> int:
        elapsed = int((time.monotonic() - self._mono0) * US)
        return self._wall0_us + elapsed + self._advanced_us

    @property
    def start_us(self) -> int:
        return self._wall0_us

    def advance(self, seconds: float) -> None:
        """Jump forward (lifecycles and URL expiry follow; rate windows do not)."""
        if seconds < 0:
            raise ValueError("the clock only moves forward")
        self._advanced_us += int(seconds * US)


def iso(us: int) -> str:
    """``2025-07-17T00:00:09.730066Z`` — the form Recall uses."""
    return datetime.fromtimestamp(us // US, UTC).strftime("%Y-%m-%dT%H:%M:%S") + f".{us % US:06d}Z"


def parse_iso(text: str) -> int:
    """Parse an ISO-8601 date or date-time (``Z``/offset/naive = UTC) into microseconds."""
    value = datetime.fromisoformat(text.strip().replace("Z", "+00:00").replace(" ", "+"))
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    delta = value - datetime(1970, 1, 1, tzinfo=UTC)
    return (delta.days * 86_400 + delta.seconds) * US + delta.microseconds


def amz_date(us: int) -> str:
    """``20250717T000009Z`` — the X-Amz-Date form."""
    return datetime.fromtimestamp(us // US, UTC).strftime("%Y%m%dT%H%M%SZ")


def parse_amz_date(text: str) -> int:
    value = datetime.strptime(text, "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
    return int(value.timestamp()) * US


def http_date(us: int) -> str:
    """RFC 7231 date for Last-Modified."""
    return datetime.fromtimestamp(us // US, UTC).strftime("%a, %d %b %Y %H:%M:%S GMT")
