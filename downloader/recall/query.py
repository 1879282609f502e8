"""Paths, query strings and pagination links for the Recall API (pure).

* Every API path ends in ``/`` (a missing slash may be answered with a redirect that drops
  the Authorization header).
* Array filters are repeated parameters (``status=a&status=b``); custom-metadata filters are
  ``metadata__KEY=VALUE``; times are ISO 8601 in UTC.
* ``next`` links are followed as given, but only when they point at the API host: the API
  key must never travel anywhere else.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable, Mapping, Sequence

from yarl import URL

from downloader.errors import InvalidResponse, NotFound
from downloader.urlpolicy import redact_url

API_PREFIX = "/api/v1"
BOT_PATH = f"{API_PREFIX}/bot/"
RECORDING_PATH = f"{API_PREFIX}/recording/"
VIDEO_SEPARATE_PATH = f"{API_PREFIX}/video_separate/"

_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._~-]{0,199}")
_METADATA_KEY = re.compile(r"[A-Za-z0-9_.-]{1,200}")

QueryValue = str | int | dt.datetime | Sequence[str] | None
Query = list[tuple[str, str]]


def id_segment(value: str, kind: str) -> str:
    """A Recall id as one safe path segment; anything else cannot name a resource."""
    if not isinstance(value, str) or not _ID.fullmatch(value):
        shown = repr(value)[:80]
        raise NotFound(f"{kind} {shown} not found: not a valid Recall id")
    return value


def detail_path(collection: str, resource_id: str, kind: str) -> str:
    return f"{collection}{id_segment(resource_id, kind)}/"


def format_time(value: dt.datetime | str) -> str:
    """ISO 8601 in UTC (``...Z``); a string is passed through; a naive datetime is refused."""
    if isinstance(value, str):
        return value
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError("filter times must be timezone-aware datetimes")
    text = value.astimezone(dt.UTC).isoformat()
    return text.removesuffix("+00:00") + "Z"


def build_query(
    params: Mapping[str, QueryValue],
    metadata: Mapping[str, str] | None = None,
) -> Query:
    """Query pairs in a stable order: ``None`` skipped, sequences repeated, times formatted."""
    pairs: Query = []
    for name, value in params.items():
        if value is None:
            continue
        if isinstance(value, dt.datetime):
            pairs.append((name, format_time(value)))
        elif isinstance(value, str):
            pairs.append((name, value))
        elif isinstance(value, bool):
            pairs.append((name, "true" if value else "false"))
        elif isinstance(value, int):
            pairs.append((name, str(value)))
        else:
            pairs.extend((name, str(item)) for item in value)
    for key, item in (metadata or {}).items():
        if not _METADATA_KEY.fullmatch(key):
            raise ValueError(f"metadata filter key {key!r} is not a plain identifier")
        pairs.append((f"metadata__{key}", str(item)))
    return pairs


def api_url(base: URL, path: str, query: Iterable[tuple[str, str]] = ()) -> URL:
    """``base`` (scheme, host, port, optional path prefix) + ``path`` (+ query)."""
    if not path.endswith("/"):
        raise ValueError(f"API paths must end in '/': {path}")
    url = base.with_path(base.path.rstrip("/") + path).with_fragment(None)
    pairs = list(query)
    return url.with_query(pairs) if pairs else url.with_query(None)


def same_origin(url: URL, base: URL) -> bool:
    return (
        url.scheme == base.scheme
        and (url.host or "").lower() == (base.host or "").lower()
        and url.port == base.port
    )


def follow_link(link: str, base: URL, expected_path: str | None = None) -> URL:
    """A pagination link (``next``) or a stored cursor URL, as given — if it is ours.

    The link must point at the API host (and at ``expected_path`` under the API prefix when
    given); otherwise :class:`InvalidResponse`. A plain-http link to an https API host is
    upgraded to https rather than sending the key in clear (DRF behind a TLS proxy emits
    such links).
    """
    try:
        url = URL(link, encoded=True)
    except (TypeError, ValueError):
        raise InvalidResponse("pagination link is not a URL") from None
    if not url.is_absolute():
        url = base.join(url)
    if url.user is not None or url.password is not None:
        raise InvalidResponse("pagination link carries credentials")
    if url.scheme == "http" and base.scheme == "https" and url.explicit_port is None:
        url = url.with_scheme("https")
    if not same_origin(url, base):
        raise InvalidResponse(
            f"pagination link points outside the API host {base.host}: {redact_url(url)}"
        )
    if expected_path is not None:
        want = base.path.rstrip("/") + expected_path
        if url.path != want:
            raise InvalidResponse(f"pagination link for {want} points at {url.path}")
    return url.with_fragment(None)
