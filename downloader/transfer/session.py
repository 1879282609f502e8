"""The media HTTP session: no credentials, no decompression, no redirects, per-phase timeouts."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import aiohttp

from downloader.errors import ConfigError
from downloader.transfer.settings import TransferSettings

DEFAULT_LIMIT = 8
DEFAULT_LIMIT_PER_HOST = 8


def media_timeout(settings: TransferSettings) -> aiohttp.ClientTimeout:
    """No total: a large part legitimately takes longer than aiohttp's default 300 s."""
    return aiohttp.ClientTimeout(
        total=None,
        connect=None,
        sock_connect=settings.connect_timeout,
        sock_read=settings.read_timeout,
    )


@asynccontextmanager
async def open_media_session(
    settings: TransferSettings | None = None,
    *,
    limit: int = DEFAULT_LIMIT,
    limit_per_host: int = DEFAULT_LIMIT_PER_HOST,
) -> AsyncIterator[aiohttp.ClientSession]:
    """A session for pre-signed media URLs only; never give it the Recall API key.

    ``trust_env`` stays off so neither ``.netrc`` credentials nor proxy variables can add an
    Authorization header; cookies are never stored or sent.
    """
    settings = settings or TransferSettings()
    connector = aiohttp.TCPConnector(limit=limit, limit_per_host=limit_per_host)
    session = aiohttp.ClientSession(
        connector=connector,
        timeout=media_timeout(settings),
        headers={"Accept-Encoding": "identity"},
        auto_decompress=False,
        raise_for_status=False,
        trust_env=False,
        cookie_jar=aiohttp.DummyCookieJar(),
        read_bufsize=settings.chunk_bytes,
    )
    try:
        yield session
    finally:
        await session.close()


def ensure_media_session(session: aiohttp.ClientSession) -> None:
    """Refuse a session that would send credentials (e.g. the API session by mistake)."""
    if session.auth is not None or "Authorization" in session.headers:
        raise ConfigError("download_part needs the media session, not one that authenticates")
