"""What to do with an HTTP answer from Recall (pure; no I/O, no event loop).

* :func:`error_for_status` maps a non-2xx response to the exception the caller acts on
  (see :mod:`downloader.errors`); the body is only used for a log-safe message.
* :func:`is_transient` says what ``stamina`` retries: 5xx, 409, network errors and
  timeouts, with exponential backoff and jitter; everything else is final. 429 is *not*
  retried by stamina: it pauses its endpoint class instead (see the client).
* :class:`RetryHook` is the hook given to stamina: it waits a server's Retry-After when it
  fits the in-call budget (``wait_max``), and gives up at once when the server asks for
  longer, so the error, with ``retry_after`` set, reaches the job layer, which reschedules
  the job after that delay. Retry-After is never shortened.
* :func:`parse_retry_after` reads ``Retry-After`` (delay-seconds or an HTTP date).
"""

from __future__ import annotations

import datetime as dt
import email.utils
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass

from downloader.errors import (
    AuthError,
    InvalidResponse,
    NetworkError,
    NotFound,
    RateLimited,
    RecallDlError,
    RefreshUrl,
    RemoteRejected,
    ServerBusy,
)

DEFAULT_RETRY_AFTER_SECONDS = 5.0
MAX_MESSAGE_CHARS = 300


@dataclass(frozen=True)
class RetryPolicy:
    """Bounds for transparent retries inside one client call.

    ``attempts``/``timeout`` bound the 5xx/409/network retries (stamina: exponential backoff
    with jitter); ``wait_max`` is the longest wait between two of them, including a server's
    Retry-After: one asking for longer ends the call with the :class:`ServerBusy` error and
    its ``retry_after``. ``max_rate_limited`` bounds how many 429s one call absorbs by
    pausing, and ``max_pause_seconds`` is the longest Retry-After it waits out itself; beyond
    either the call raises :class:`RateLimited` so the job layer reschedules.
    """

    attempts: int = 4
    timeout: float = 60.0
    wait_initial: float = 0.5
    wait_max: float = 10.0
    wait_jitter: float = 1.0
    max_rate_limited: int = 8
    max_pause_seconds: float = 120.0
    default_retry_after: float = DEFAULT_RETRY_AFTER_SECONDS


def parse_retry_after(
    value: str | None,
    *,
    now: dt.datetime | None = None,
    default: float = DEFAULT_RETRY_AFTER_SECONDS,
) -> float:
    """Seconds to wait from a ``Retry-After`` header; ``default`` when missing or invalid."""
    if value is None:
        return default
    text = value.strip()
    if not text:
        return default
    try:
        seconds = float(text)
    except ValueError:
        pass
    else:
        if math.isfinite(seconds) and seconds >= 0:
            return seconds
        return default
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return default
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    current = now or dt.datetime.now(dt.UTC)
    return max(0.0, (when - current).total_seconds())


def is_transient(exc: Exception) -> bool:
    """stamina's ``on`` hook: retry 5xx/409 and network errors, nothing else."""
    return isinstance(exc, ServerBusy | NetworkError)


def _clean(text: str) -> str:
    flat = " ".join(text.split())
    if len(flat) > MAX_MESSAGE_CHARS:
        flat = flat[: MAX_MESSAGE_CHARS - 1] + "…"
    return flat


def body_message(body: bytes) -> str | None:
    """A short, log-safe message from an error body (DRF's ``{"detail": ...}`` and kin)."""
    if not body.strip():
        return None
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return None
    if isinstance(data, Mapping):
        for key in ("detail", "message", "error", "code"):
            value = data.get(key)
            if isinstance(value, str) and value.strip():
                return _clean(value)
        return _clean(json.dumps(data, separators=(",", ":"), ensure_ascii=False))
    if isinstance(data, list | str):
        return _clean(json.dumps(data, ensure_ascii=False) if isinstance(data, list) else data)
    return None


def looks_like_json(content_type: str | None, body: bytes) -> bool:
    if content_type and "json" in content_type.lower():
        return True
    return body.lstrip()[:1] in (b"{", b"[")


def error_for_status(
    status: int,
    *,
    what: str,
    host: str,
    region: str,
    body: bytes = b"",
    content_type: str | None = None,
    retry_after: str | None = None,
    default_retry_after: float = DEFAULT_RETRY_AFTER_SECONDS,
) -> RecallDlError | None:
    """The error for an API response, or ``None`` for 2xx.

    ``what`` names the request for messages (``"bot 1234"``, ``"GET /api/v1/bot/"``); it must
    not contain a query string. Messages never include the API key or a query string.
    """
    if 200 <= status < 300:
        return None
    message = body_message(body) if looks_like_json(content_type, body) else None
    suffix = f": {message}" if message else ""
    if status == 401:
        return AuthError(
            f"the Recall API rejected the key (HTTP 401) at {host}; keys only work in the "
            f"region that minted them — check RECALL_REGION={region} / RECALL_API_URL"
        )
    if status == 404:
        return NotFound(f"{what} not found")
    if status == 429:
        seconds = parse_retry_after(retry_after, default=default_retry_after)
        return RateLimited(f"rate limited (HTTP 429) on {what}", retry_after=seconds)
    if status == 409 or 500 <= status < 600:
        busy_wait = parse_retry_after(retry_after, default=0.0) if retry_after else None
        return ServerBusy(f"HTTP {status} from Recall on {what}{suffix}", retry_after=busy_wait)
    if status == 403 and message is None:
        return RemoteRejected(
            f"request blocked by Recall's firewall (HTTP 403) on {what}; this happens when a "
            "GET carries a body, a request contains a localhost URL, or the server's IP "
            "reputation is poor"
        )
    if 300 <= status < 400:
        return InvalidResponse(
            f"unexpected redirect (HTTP {status}) on {what}; check RECALL_API_URL "
            "(API paths must end in '/')"
        )
    return RemoteRejected(f"HTTP {status} from Recall on {what}{suffix}")


def manifest_error_for_status(
    status: int,
    *,
    what: str,
    body: bytes = b"",
    retry_after: str | None = None,
) -> RecallDlError | None:
    """The error for a manifest (pre-signed, no Authorization) response, or ``None`` for 2xx.

    An expired pre-signed link (S3 answers 403 "Request has expired") asks the caller to
    re-read the video_separate for a fresh URL.
    """
    if 200 <= status < 300:
        return None
    if status in (403, 410) and b"expired" in body.lower():
        return RefreshUrl(f"the manifest link expired (HTTP {status}) for {what}")
    if status == 404:
        return NotFound(f"{what} not found")
    if status in (409, 429) or 500 <= status < 600:
        seconds = parse_retry_after(retry_after, default=0.0) if retry_after else None
        return ServerBusy(f"HTTP {status} fetching {what}", retry_after=seconds)
    if 300 <= status < 400:
        return InvalidResponse(f"redirect (HTTP {status}) without a Location for {what}")
    return RemoteRejected(f"HTTP {status} fetching {what}")


def retry_hook(max_wait: float) -> RetryHook:
    """A stamina ``on`` hook that honours a server's Retry-After on retryable errors."""
    return RetryHook(max_wait)


@dataclass(frozen=True)
class RetryHook:
    """stamina's ``on`` hook: ``True`` (default backoff), the server's Retry-After as the
    wait, or ``False`` (raise now) for final errors and for a Retry-After longer than
    ``max_wait`` — that one is the job layer's to wait, from the error's ``retry_after``."""

    max_wait: float

    def __call__(self, exc: Exception) -> bool | float:
        if not is_transient(exc):
            return False
        after = getattr(exc, "retry_after", None)
        if isinstance(after, int | float) and after > 0:
            if after > self.max_wait:
                return False
            return float(after)
        return True
