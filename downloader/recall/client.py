"""The Recall API client: bots, recordings, video_separate, and the parts manifest.

Two HTTP sessions, never mixed:

* the **API session** talks only to the configured API host (every URL is checked), carries
  ``Authorization: Token <key>``, follows no redirects, and has explicit timeouts;
* the **manifest session** carries no credentials at all and follows redirects only by hand,
  re-checking each hop against the :class:`UrlPolicy` — the manifest URL comes from remote
  data.

Every API request passes the shared :class:`RateLimiter` first (sliding window per endpoint
class), so the client does not provoke 429s; a 429 anyway pauses its class for Retry-After
and the request is repeated transparently (a bounded number of times). 5xx, 409 and network
errors are retried by ``stamina`` with exponential backoff and jitter, within an attempt and
a time cap, after which the :class:`RetryLater` subclass reaches the caller. Only exceptions
from :mod:`downloader.errors` leave this module.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import anyio
import stamina
import structlog
from yarl import URL

from downloader import __version__
from downloader.config import Settings
from downloader.errors import (
    InvalidResponse,
    NetworkError,
    NotFound,
    RateLimited,
    RecallDlError,
    RetryLater,
)
from downloader.models import Bot, Page, Part, RecordingRef, VideoSeparate, parse_manifest
from downloader.recall.query import (
    BOT_PATH,
    RECORDING_PATH,
    VIDEO_SEPARATE_PATH,
    Query,
    api_url,
    build_query,
    detail_path,
    follow_link,
    same_origin,
)
from downloader.recall.ratelimit import EndpointClass, RateLimiter
from downloader.recall.retry import (
    RetryHook,
    RetryPolicy,
    error_for_status,
    manifest_error_for_status,
)
from downloader.urlpolicy import UrlPolicy, redact_url

log = structlog.get_logger(__name__)

MAX_API_BODY_BYTES = 16 << 20
MAX_MANIFEST_BYTES = 32 << 20
MAX_MANIFEST_REDIRECTS = 5
READ_CHUNK_BYTES = 64 << 10
REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
USER_AGENT = f"recall-dl/{__version__}"
PROBE_BOT_ID = "00000000-0000-0000-0000-000000000000"

TimeFilter = dt.datetime | str | None
StrOrStrs = str | Sequence[str] | None


@dataclass
class ClientStats:
    """Counters for metrics and tests (per process, per client)."""

    requests: dict[EndpointClass, int] = field(
        default_factory=lambda: dict.fromkeys(EndpointClass, 0)
    )
    rate_limited: dict[EndpointClass, int] = field(
        default_factory=lambda: dict.fromkeys(EndpointClass, 0)
    )
    retries: int = 0
    manifest_requests: int = 0


@dataclass(frozen=True)
class _Response:
    status: int
    body: bytes
    content_type: str | None
    retry_after: str | None
    location: str | None


def _describe(exc: BaseException) -> str:
    """A log-safe description of a transport error (aiohttp messages may embed full URLs)."""
    if isinstance(exc, TimeoutError):
        return "timed out"
    if isinstance(exc, aiohttp.ClientConnectorError):
        return f"cannot connect ({exc.os_error.strerror or type(exc.os_error).__name__})"
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        return "server disconnected"
    if isinstance(exc, aiohttp.ClientPayloadError):
        return "response body was cut short"
    return type(exc).__name__


def _as_list(value: StrOrStrs) -> Sequence[str] | None:
    if value is None:
        return None
    return [value] if isinstance(value, str) else list(value)


def _decode_json(body: bytes, what: str, content_type: str | None) -> Any:
    try:
        return json.loads(body)
    except (ValueError, UnicodeDecodeError):
        kind = (content_type or "no content type").split(";")[0].strip()
        raise InvalidResponse(f"{what}: response is not valid JSON ({kind})") from None


async def _read_capped(response: aiohttp.ClientResponse, cap: int, what: str) -> bytes:
    chunks: list[bytes] = []
    total = 0
    async for chunk in response.content.iter_chunked(READ_CHUNK_BYTES):
        total += len(chunk)
        if total > cap:
            raise InvalidResponse(f"{what}: response larger than {cap} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


class RecallClient:
    """Async client for one Recall workspace. Open it with :meth:`open`."""

    def __init__(
        self,
        settings: Settings,
        api_session: aiohttp.ClientSession,
        manifest_session: aiohttp.ClientSession,
        limiter: RateLimiter,
        *,
        retry: RetryPolicy | None = None,
    ) -> None:
        self.settings = settings
        self.limiter = limiter
        self.retry = retry or RetryPolicy()
        self.stats = ClientStats()
        self.policy = UrlPolicy.for_api(settings.base_url, settings.allowed_hosts)
        self._base = URL(settings.base_url)
        self._host = self._base.authority or self._base.host or settings.base_url
        self._api = api_session
        self._manifest = manifest_session
        # One set of slots per class: a task waiting for its class's window (or a 429 pause)
        # holds only a slot of that class, so the other class keeps flowing; and a request
        # is sent right after ``acquire``, so the recorded send time is the real one.
        self._slots = {cls: anyio.Semaphore(settings.api_concurrency) for cls in EndpointClass}

    # ------------------------------------------------------------------ lifecycle

    @classmethod
    @contextlib.asynccontextmanager
    async def open(
        cls,
        settings: Settings,
        limiter: RateLimiter | None = None,
        *,
        retry: RetryPolicy | None = None,
    ) -> AsyncIterator[RecallClient]:
        """Open both sessions; ``limiter=None`` makes a new one from the settings."""
        key = settings.require_api_key()
        timeout = aiohttp.ClientTimeout(
            total=settings.api_timeout_seconds, sock_connect=settings.connect_timeout_seconds
        )
        async with contextlib.AsyncExitStack() as stack:
            api = await stack.enter_async_context(
                aiohttp.ClientSession(
                    headers={
                        "Authorization": f"Token {key.reveal()}",
                        "Accept": "application/json",
                        "User-Agent": USER_AGENT,
                    },
                    timeout=timeout,
                    connector=aiohttp.TCPConnector(limit=2 * settings.api_concurrency + 2),
                    cookie_jar=aiohttp.DummyCookieJar(),
                    raise_for_status=False,
                )
            )
            manifest = await stack.enter_async_context(
                aiohttp.ClientSession(
                    headers={"Accept": "application/json", "User-Agent": USER_AGENT},
                    timeout=timeout,
                    connector=aiohttp.TCPConnector(limit=settings.concurrency + 2),
                    cookie_jar=aiohttp.DummyCookieJar(),
                    raise_for_status=False,
                )
            )
            yield cls(
                settings, api, manifest, limiter or RateLimiter.from_settings(settings), retry=retry
            )

    # ------------------------------------------------------------------ startup check

    async def verify_key(self) -> None:
        """Fail fast on a wrong key or region: one cheap retrieve of a bot that cannot exist.

        404 means the key was accepted; 401 raises :class:`AuthError` naming the region.
        """
        try:
            await self.get_bot(PROBE_BOT_ID)
        except NotFound:
            return

    # ------------------------------------------------------------------ bots

    async def get_bot(self, bot_id: str) -> Bot:
        path = detail_path(BOT_PATH, bot_id, "bot")
        data = await self._get(EndpointClass.RETRIEVE, api_url(self._base, path), f"bot {bot_id}")
        return Bot.parse(data)

    async def iter_bots(
        self,
        *,
        status: StrOrStrs = None,
        join_at_after: TimeFilter = None,
        join_at_before: TimeFilter = None,
        metadata: Mapping[str, str] | None = None,
        platform: StrOrStrs = None,
        meeting_url: str | None = None,
    ) -> AsyncIterator[Bot]:
        """Every bot matching the filters (page-number pagination, followed to the end).

        Page numbers shift when bots are created meanwhile, so a bot seen on an earlier page
        is not yielded twice.
        """
        query = build_query(
            {
                "join_at_after": join_at_after,
                "join_at_before": join_at_before,
                "meeting_url": meeting_url,
                "platform": _as_list(platform),
                "status": _as_list(status),
            },
            metadata,
        )
        seen: set[str] = set()
        async for page in self._pages(BOT_PATH, query):
            for item in page.results:
                bot = Bot.parse(item)
                if bot.id not in seen:
                    seen.add(bot.id)
                    yield bot

    # ------------------------------------------------------------------ recordings

    async def get_recording(self, recording_id: str) -> RecordingRef:
        path = detail_path(RECORDING_PATH, recording_id, "recording")
        url = api_url(self._base, path)
        data = await self._get(EndpointClass.RETRIEVE, url, f"recording {recording_id}")
        return RecordingRef.parse(data)

    async def iter_recordings(
        self,
        *,
        bot_id: str | None = None,
        created_at_after: TimeFilter = None,
        created_at_before: TimeFilter = None,
        status_code: str | None = None,
    ) -> AsyncIterator[RecordingRef]:
        """Every recording matching the filters (cursor pagination, followed to the end)."""
        query = build_query(
            {
                "bot_id": bot_id,
                "created_at_after": created_at_after,
                "created_at_before": created_at_before,
                "status_code": status_code,
            }
        )
        async for page in self._pages(RECORDING_PATH, query):
            for item in page.results:
                yield RecordingRef.parse(item)

    # ------------------------------------------------------------------ video_separate

    async def get_video_separate(self, video_separate_id: str) -> VideoSeparate:
        path = detail_path(VIDEO_SEPARATE_PATH, video_separate_id, "video_separate")
        url = api_url(self._base, path)
        data = await self._get(EndpointClass.RETRIEVE, url, f"video_separate {video_separate_id}")
        return VideoSeparate.parse(data)

    async def iter_video_separates(
        self,
        *,
        recording_id: str | None = None,
        status_code: str | None = None,
        created_at_after: TimeFilter = None,
        created_at_before: TimeFilter = None,
    ) -> AsyncIterator[VideoSeparate]:
        """Every video_separate matching the filters (cursor pagination, to the end)."""
        query = self._video_separate_query(
            recording_id, status_code, created_at_after, created_at_before
        )
        async for page in self._pages(VIDEO_SEPARATE_PATH, query):
            for item in page.results:
                yield VideoSeparate.parse(item)

    async def video_separate_page(
        self,
        *,
        recording_id: str | None = None,
        status_code: str | None = None,
        created_at_after: TimeFilter = None,
        created_at_before: TimeFilter = None,
        cursor_url: str | None = None,
    ) -> tuple[list[VideoSeparate], str | None]:
        """One page: its items and the ``next`` URL (``None`` at the end).

        Store the ``next`` URL to resume a backfill; pass it back as ``cursor_url`` (the
        filters are then taken from it and the arguments are ignored).
        """
        if cursor_url is not None:
            url = follow_link(cursor_url, self._base, VIDEO_SEPARATE_PATH)
        else:
            query = self._video_separate_query(
                recording_id, status_code, created_at_after, created_at_before
            )
            url = api_url(self._base, VIDEO_SEPARATE_PATH, query)
        page = await self._list_page(url, VIDEO_SEPARATE_PATH)
        if page.next_url is not None:
            # Validate now, so a bad link fails here rather than when the backfill resumes.
            follow_link(page.next_url, self._base, VIDEO_SEPARATE_PATH)
        return [VideoSeparate.parse(item) for item in page.results], page.next_url

    @staticmethod
    def _video_separate_query(
        recording_id: str | None,
        status_code: str | None,
        created_at_after: TimeFilter,
        created_at_before: TimeFilter,
    ) -> Query:
        return build_query(
            {
                "recording_id": recording_id,
                "status_code": status_code,
                "created_at_after": created_at_after,
                "created_at_before": created_at_before,
            }
        )

    # ------------------------------------------------------------------ manifest

    async def fetch_manifest(self, download_url: str) -> list[Part]:
        """The parts of a video_separate (``data.download_url``), without credentials.

        The URL is checked against the allow-list before any request, and so is every
        redirect hop. An expired link raises :class:`RefreshUrl`.
        """
        url = self.policy.check(download_url)
        what = f"manifest {redact_url(url)}"
        body = await self._with_retries(
            lambda: self._fetch_manifest_once(download_url, what), what, redact_url(url)
        )
        return parse_manifest(_decode_json(body, what, None))

    async def _fetch_manifest_once(self, download_url: str, what: str) -> bytes:
        current = URL(download_url, encoded=True)
        for _ in range(MAX_MANIFEST_REDIRECTS + 1):
            self.stats.manifest_requests += 1
            response = await self._send(self._manifest, current, MAX_MANIFEST_BYTES, what)
            log.debug("manifest_request", url=redact_url(current), status=response.status)
            if response.status in REDIRECT_STATUSES and response.location:
                target = current.join(URL(response.location, encoded=True))
                self.policy.check(str(target))
                current = target
                continue
            error = manifest_error_for_status(
                response.status, what=what, body=response.body, retry_after=response.retry_after
            )
            if error is not None:
                raise error
            return response.body
        raise InvalidResponse(f"{what}: more than {MAX_MANIFEST_REDIRECTS} redirects")

    # ------------------------------------------------------------------ plumbing

    async def _pages(self, path: str, query: Query) -> AsyncIterator[Page]:
        """Every page of a list endpoint, following ``next`` to the end (either kind)."""
        url: URL | None = api_url(self._base, path, query)
        seen: set[str] = set()
        while url is not None:
            key = str(url)
            if key in seen:
                raise InvalidResponse(f"pagination of {path} loops back to a page already read")
            seen.add(key)
            page = await self._list_page(url, path)
            yield page
            url = follow_link(page.next_url, self._base, path) if page.next_url else None

    async def _list_page(self, url: URL, path: str) -> Page:
        data = await self._get(EndpointClass.LIST, url, f"GET {path}")
        return Page.parse(data, f"list {path}")

    async def _get(self, cls: EndpointClass, url: URL, what: str) -> Any:
        """GET an API URL as JSON, with rate limiting, 429 pauses and retries."""
        if not same_origin(url, self._base):  # defence in depth: the key goes nowhere else
            raise InvalidResponse(f"refusing to send the API key to {redact_url(url)}")
        body = await self._with_retries(
            lambda: self._get_rate_limited(cls, url, what), what, url.path
        )
        return _decode_json(body, what, "application/json")

    async def _with_retries(
        self, once: Callable[[], Awaitable[bytes]], what: str, shown: str
    ) -> bytes:
        """Run ``once()`` under stamina: 5xx/409/network retried with backoff + jitter."""
        policy = self.retry
        last: RetryLater | None = None
        async for attempt in stamina.retry_context(
            on=RetryHook(policy.wait_max),
            attempts=policy.attempts,
            timeout=policy.timeout,
            wait_initial=policy.wait_initial,
            wait_max=policy.wait_max,
            wait_jitter=policy.wait_jitter,
        ):
            with attempt:
                if last is not None:
                    self.stats.retries += 1
                    log.warning(
                        "api_retry",
                        what=what,
                        path=shown,
                        attempt=attempt.num,
                        reason=last.reason,
                    )
                try:
                    result: bytes = await once()
                except RetryLater as exc:
                    last = exc
                    raise
                return result
        raise AssertionError("unreachable: stamina either returns or raises")  # pragma: no cover

    async def _get_rate_limited(self, cls: EndpointClass, url: URL, what: str) -> bytes:
        """One logical request: absorbs 429s by pausing the class, within bounds."""
        policy = self.retry
        for round_ in range(policy.max_rate_limited + 1):
            async with self._slots[cls]:
                await self.limiter.acquire(cls)
                self.stats.requests[cls] += 1
                started = time.monotonic()
                response = await self._send(self._api, url, MAX_API_BODY_BYTES, what)
            log.debug(
                "api_request",
                method="GET",
                path=url.path,
                endpoint_class=cls.value,
                status=response.status,
                elapsed_ms=round((time.monotonic() - started) * 1000, 1),
            )
            error = error_for_status(
                response.status,
                what=what,
                host=self._host,
                region=self.settings.region,
                body=response.body,
                content_type=response.content_type,
                retry_after=response.retry_after,
                default_retry_after=policy.default_retry_after,
            )
            if error is None:
                return response.body
            if not isinstance(error, RateLimited):
                raise error
            seconds = error.retry_after if error.retry_after is not None else 0.0
            self.stats.rate_limited[cls] += 1
            await self.limiter.pause(cls, seconds)
            log.warning(
                "api_rate_limited",
                path=url.path,
                endpoint_class=cls.value,
                retry_after=seconds,
                count=round_ + 1,
            )
            if seconds > policy.max_pause_seconds:
                raise error
        raise RateLimited(
            f"rate limited (HTTP 429) {policy.max_rate_limited + 1} times in a row on {what}",
            retry_after=await self.limiter.paused_for(cls),
        )

    async def _send(
        self, session: aiohttp.ClientSession, url: URL, cap: int, what: str
    ) -> _Response:
        """One GET without a body and without following redirects; transport errors mapped."""
        try:
            async with session.get(url, allow_redirects=False) as response:
                body = await _read_capped(response, cap, what)
                return _Response(
                    status=response.status,
                    body=body,
                    content_type=response.headers.get("Content-Type"),
                    retry_after=response.headers.get("Retry-After"),
                    location=response.headers.get("Location"),
                )
        except RecallDlError:
            raise
        except (aiohttp.ClientError, TimeoutError) as exc:
            # ``from None``: aiohttp's messages can embed the full URL with its query string.
            raise NetworkError(f"{what}: {_describe(exc)}") from None
