"""Test doubles for code that uses a job store (shipped in the package, like the simulator)."""

from __future__ import annotations

import threading

FAKE_EPOCH = 1_700_000_000.0  # an arbitrary, realistic "now" for fake clocks


class FakeClock:
    """A clock that only moves when told to; pass it as ``open_store(url, clock=...)``.

    Safe to read from the store's worker thread while a test advances it.
    """

    def __init__(self, start: float = FAKE_EPOCH) -> None:
        self._now = start
        self._lock = threading.Lock()

    def __call__(self) -> float:
        with self._lock:
            return self._now

    def advance(self, seconds: float) -> float:
        """Move forward (never back, as a real clock used for leases must not)."""
        if seconds < 0:
            raise ValueError("a fake clock only moves forward")
        with self._lock:
            self._now += seconds
            return self._now
