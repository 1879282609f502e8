"""The Recall API client (I/O) and its pure parts: rate limiting, retry classification, queries."""

from downloader.recall.client import ClientStats, RecallClient
from downloader.recall.ratelimit import (
    EndpointClass,
    LocalRateBudget,
    RateBudget,
    RateLimiter,
    SlidingWindow,
)
from downloader.recall.retry import RetryPolicy, parse_retry_after

__all__ = [
    "ClientStats",
    "EndpointClass",
    "LocalRateBudget",
    "RateBudget",
    "RateLimiter",
    "RecallClient",
    "RetryPolicy",
    "SlidingWindow",
    "parse_retry_after",
]
