"""Sliding-window rate limit with Django REST Framework ``SimpleRateThrottle`` semantics (pure).

A request is refused when the last ``window`` seconds already hold ``limit`` *accepted*
requests; refused requests are not recorded (DRF only appends on success). The wait it
announces is the time until the oldest accepted request leaves the window, rounded up to
whole seconds and never 0, because ``Retry-After`` is an integer and 0 would invite a spin.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass


@dataclass(frozen=True)
class Decision:
    allowed: bool
    retry_after: int = 0  # whole seconds, >= 1 when refused


class SlidingWindow:
    def __init__(self, limit: int | None, window_seconds: float) -> None:
        self.limit = limit
        self.window = window_seconds
        self._accepted: deque[float] = deque()

    def check(self, now: float) -> Decision:
        """Decide about a request at monotonic time ``now`` and record it if allowed."""
        if self.limit is None:
            return Decision(True)
        while self._accepted and self._accepted[0] <= now - self.window:
            self._accepted.popleft()
        if len(self._accepted) >= self.limit:
            oldest = self._accepted[0] if self._accepted else now  # limit 0: always refuse
            wait = oldest + self.window - now
            return Decision(False, max(1, math.ceil(wait)))
        self._accepted.append(now)
        return Decision(True)

    def reset(self) -> None:
        self._accepted.clear()
