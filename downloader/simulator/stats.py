"""What the simulator saw: counters, media concurrency, protocol violations, a request log.

Tests assert on these instead of on timing: "no request before Retry-After", "never two
concurrent downloads of one part", "no Authorization header ever reached the media host".
"""

from __future__ import annotations

import time
from collections import Counter, deque
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

VIOLATIONS = (
    "auth_to_media",
    "auth_to_manifest",
    "body_on_get",
    "missing_slash",
    "over_limit",
    "early_retry",
    "redirect_followed",
)
RATE_CLASSES = ("list", "retrieve")
API_TIMES_LIMIT = 10_000


class Stats:
    def __init__(self, request_log_limit: int = 10_000) -> None:
        self._log_limit = request_log_limit
        self.reset()

    def reset(self) -> None:
        self.requests: Counter[str] = Counter()
        self.status_codes: Counter[str] = Counter()
        self.served_429: Counter[str] = Counter(dict.fromkeys(RATE_CLASSES, 0))
        self.violations: Counter[str] = Counter(dict.fromkeys(VIOLATIONS, 0))
        self.api_times: dict[str, deque[float]] = {
            c: deque(maxlen=API_TIMES_LIMIT) for c in RATE_CLASSES
        }
        self.request_log: deque[dict[str, Any]] = deque(maxlen=self._log_limit)
        self.webhooks: Counter[str] = Counter({"sent": 0, "delivered": 0, "failed": 0})
        self.bytes_served_total = 0
        self.bytes_served_per_part: Counter[str] = Counter()
        self.range_requests = 0  # media requests carrying a Range header, however answered
        self.partial_responses = 0  # 206 Partial Content
        self.range_ignored = 0  # a Range header answered with the whole object (200)
        self.range_unsatisfiable = 0  # 416
        self.full_requests = 0  # 200 with the whole object
        self.concurrent_downloads = 0
        self.max_concurrent_downloads = 0
        self._concurrent_per_part: Counter[str] = Counter()
        self.max_concurrent_per_part: Counter[str] = Counter()
        self.completed_downloads_per_part: Counter[str] = Counter()

    def log(self, entry: dict[str, Any]) -> None:
        self.request_log.append(entry)
        self.status_codes[f"{entry['host']}:{entry['status']}"] += 1

    @contextmanager
    def download(self, part_id: str) -> Iterator[None]:
        """Track one media body in flight (for the concurrency maxima)."""
        self.concurrent_downloads += 1
        self._concurrent_per_part[part_id] += 1
        self.max_concurrent_downloads = max(
            self.max_concurrent_downloads, self.concurrent_downloads
        )
        self.max_concurrent_per_part[part_id] = max(
            self.max_concurrent_per_part[part_id], self._concurrent_per_part[part_id]
        )
        try:
            yield
        finally:
            self.concurrent_downloads -= 1
            self._concurrent_per_part[part_id] -= 1

    def sent(self, part_id: str, size: int) -> None:
        self.bytes_served_total += size
        self.bytes_served_per_part[part_id] += size

    def snapshot(self, faults_injected: Mapping[str, int]) -> dict[str, Any]:
        return {
            "requests": dict(self.requests),
            "status_codes": dict(self.status_codes),
            "served_429": dict(self.served_429),
            "faults_injected": dict(faults_injected),
            "media": {
                "bytes_served_total": self.bytes_served_total,
                "bytes_served_per_part": dict(self.bytes_served_per_part),
                "range_requests": self.range_requests,
                "partial_responses": self.partial_responses,
                "range_ignored": self.range_ignored,
                "range_unsatisfiable": self.range_unsatisfiable,
                "full_requests": self.full_requests,
                "concurrent_downloads": self.concurrent_downloads,
                "max_concurrent_downloads": self.max_concurrent_downloads,
                "max_concurrent_per_part": dict(self.max_concurrent_per_part),
                "completed_downloads_per_part": dict(self.completed_downloads_per_part),
            },
            "violations": dict(self.violations),
            "webhooks": dict(self.webhooks),
            "request_log_size": len(self.request_log),
            "api_request_times": {c: list(times) for c, times in self.api_times.items()},
            "monotonic_now": time.monotonic(),
        }
