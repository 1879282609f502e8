"""The pure half of a transfer: what to trust on disk, what to ask, what an answer means.

Nothing here touches the network, the disk or the clock; the executor in ``engine`` feeds
in facts (the checkpoint, the partial file's size, the response status and headers, an error
body) and carries out the decision.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum

from downloader.errors import (
    InvalidResponse,
    NetworkError,
    NotFound,
    RecallDlError,
    RefreshUrl,
    RemoteRejected,
    ServerBusy,
)

EXPIRED_MESSAGE = "request has expired"
EXPIRED_CODES = frozenset({"expiredtoken"})
REASON_LIMIT = 200


@dataclass(frozen=True)
class Checkpoint:
    """Durable resume state: ``offset`` bytes of the partial file are fsynced and trusted."""

    offset: int
    etag: str | None = None
    total: int | None = None

    def __post_init__(self) -> None:
        if self.offset < 0 or (self.total is not None and not 0 <= self.offset <= self.total):
            raise ValueError(f"inconsistent checkpoint offset={self.offset} total={self.total}")

    def to_json(self) -> dict[str, object]:
        return {"offset": self.offset, "etag": self.etag, "total": self.total}

    @classmethod
    def from_json(cls, data: Mapping[str, object]) -> Checkpoint:
        """Inverse of ``to_json``; raises ValueError on anything else."""
        offset, etag, total = data.get("offset"), data.get("etag"), data.get("total")
        if type(offset) is not int:
            raise ValueError("checkpoint offset must be an integer")
        if etag is not None and not isinstance(etag, str):
            raise ValueError("checkpoint etag must be a string or null")
        if total is not None and type(total) is not int:
            raise ValueError("checkpoint total must be an integer or null")
        return cls(offset=offset, etag=etag, total=total)


# --- Content-Range ----------------------------------------------------------------------

_CONTENT_RANGE = re.compile(r"^\s*bytes\s+(?:(\d{1,19})-(\d{1,19})|(\*))/(\d{1,19}|\*)\s*$", re.I)


@dataclass(frozen=True)
class ContentRange:
    """``bytes start-end/total``; ``start``/``end`` are None for ``bytes */total`` (a 416)."""

    start: int | None
    end: int | None
    total: int | None

    def __str__(self) -> str:
        total = "*" if self.total is None else str(self.total)
        if self.start is None:
            return f"bytes */{total}"
        return f"bytes {self.start}-{self.end}/{total}"


def parse_content_range(value: str | None) -> ContentRange | None:
    """Parse a Content-Range header strictly (RFC 9110 §14.4); None if absent or invalid."""
    if value is None:
        return None
    match = _CONTENT_RANGE.match(value)
    if match is None:
        return None
    first, last, star, total_text = match.groups()
    total = None if total_text == "*" else int(total_text)
    if star is not None:
        return None if total is None else ContentRange(None, None, total)
    start, end = int(first), int(last)
    if end < start or (total is not None and end >= total):
        return None
    return ContentRange(start, end, total)


def parse_content_length(value: str | None) -> int | None:
    if value is None or not value.strip().isdigit():
        return None
    return int(value.strip())


def parse_retry_after(value: str | None) -> float | None:
    """Delta-seconds only; an HTTP-date is ignored (the caller's back-off applies)."""
    if value is None or not value.strip().isdigit():
        return None
    return float(value.strip())


def is_strong_etag(etag: str | None) -> bool:
    return bool(etag) and not etag.startswith("W/")  # type: ignore[union-attr]


# --- Where to start ---------------------------------------------------------------------


@dataclass(frozen=True)
class Position:
    """What the next request builds on: ``offset`` trusted bytes of an object (etag, total)."""

    offset: int
    etag: str | None
    total: int | None
    reason: str

    @property
    def complete(self) -> bool:
        return self.total is not None and self.offset == self.total


FRESH = Position(0, None, None, "no checkpoint")


def plan_start(checkpoint: Checkpoint | None, partial_size: int | None) -> Position:
    """Trust the partial file only up to the checkpoint, and only if it is that long."""
    if checkpoint is None:
        reason = "partial file without checkpoint" if partial_size else "no partial file"
        return Position(0, None, None, reason)
    if not partial_size:
        return Position(0, None, None, "checkpoint but no partial file")
    if checkpoint.offset == 0:
        return Position(0, None, None, "checkpoint at zero")
    if partial_size < checkpoint.offset:
        return Position(0, None, None, "partial file shorter than its checkpoint")
    return Position(checkpoint.offset, checkpoint.etag, checkpoint.total, "resume at checkpoint")


def request_headers(position: Position) -> dict[str, str]:
    headers = {"Accept-Encoding": "identity"}
    if position.offset > 0:
        headers["Range"] = f"bytes={position.offset}-"
        if position.etag is not None and is_strong_etag(position.etag):
            headers["If-Range"] = position.etag
    return headers


# --- What the answer means --------------------------------------------------------------


class Action(Enum):
    APPEND = "append"  # 206 at our offset: write the body after the trusted prefix
    RESTART = "restart"  # 200: the body is the whole object; write it from zero
    REFETCH = "refetch"  # the answer does not fit what we have: drop the body, ask from zero
    VERIFY = "verify"  # 416 at exactly the total: the file on disk is complete
    REDIRECT = "redirect"  # 3xx: the executor decides whether the Location may be followed
    ERROR = "error"  # 4xx/5xx: read a bounded body and call ``error_for_status``


@dataclass(frozen=True)
class Response:
    """The facts of a response the planner needs (headers by their canonical names)."""

    status: int
    content_range: str | None = None
    content_length: str | None = None
    etag: str | None = None


@dataclass(frozen=True)
class Decision:
    action: Action
    position: Position  # where the body (if any) goes, and the object's etag/total
    reason: str = ""
    error: RecallDlError | None = None


def _object_changed(position: Position, etag: str | None, total: int | None) -> str | None:
    if position.etag is not None and etag is not None and etag != position.etag:
        return "ETag changed"
    if position.total is not None and total is not None and total != position.total:
        return f"total changed from {position.total} to {total}"
    return None


def decide(position: Position, response: Response) -> Decision:
    """Map one response to an action, given what we asked for (``position``)."""
    status = response.status
    if status == 200:
        total = parse_content_length(response.content_length)
        fresh = Position(0, response.etag, total, "200: whole object")
        return Decision(Action.RESTART, fresh, "server sent the whole object")
    if status == 206:
        return _decide_partial(position, response)
    if status == 416:
        return _decide_unsatisfiable(position, response)
    if status in (301, 302, 303, 307, 308):
        return Decision(Action.REDIRECT, position, f"redirect {status}")
    if status == 412:
        return Decision(Action.REFETCH, FRESH, "412: precondition failed, object changed")
    if status >= 400:
        return Decision(Action.ERROR, position, f"HTTP {status}")
    error = InvalidResponse(f"unexpected HTTP {status} for a media download")
    return Decision(Action.ERROR, position, error.reason, error)


def _decide_partial(position: Position, response: Response) -> Decision:
    cr = parse_content_range(response.content_range)
    if cr is None or cr.start is None or cr.end is None:
        return Decision(Action.REFETCH, FRESH, "206 without a usable Content-Range")
    if cr.start != position.offset:
        return Decision(
            Action.REFETCH, FRESH, f"206 starts at {cr.start}, asked for {position.offset}"
        )
    if cr.total is None:
        return Decision(Action.REFETCH, FRESH, "206 without a total length")
    changed = _object_changed(position, response.etag, cr.total)
    if changed is not None:
        return Decision(Action.REFETCH, FRESH, changed)
    length = parse_content_length(response.content_length)
    if length is not None and length != cr.end - cr.start + 1:
        error = InvalidResponse(f"Content-Length {length} disagrees with Content-Range {cr}")
        return Decision(Action.ERROR, position, error.reason, error)
    etag = response.etag if response.etag is not None else position.etag
    return Decision(Action.APPEND, Position(position.offset, etag, cr.total, "206"), "resume")


def _decide_unsatisfiable(position: Position, response: Response) -> Decision:
    cr = parse_content_range(response.content_range)
    total = cr.total if cr is not None else position.total
    if position.offset == 0:
        error = InvalidResponse("416 for a request from byte zero (empty object?)")
        return Decision(Action.ERROR, position, error.reason, error)
    changed = _object_changed(position, response.etag, total)
    if changed is None and total is not None and total == position.offset:
        done = Position(position.offset, position.etag, total, "416 at total")
        return Decision(Action.VERIFY, done, "file on disk is complete")
    reason = changed or f"416 with total {total}, have {position.offset}"
    return Decision(Action.REFETCH, FRESH, reason)


# --- Errors -----------------------------------------------------------------------------

_XML_FIELD = {
    name: re.compile(rf"<{name}>([^<]{{0,1000}})</{name}>") for name in ("Code", "Message")
}
_UNSAFE_TEXT = re.compile(r"[^\x20-\x7e]+")


def s3_error_fields(body: bytes) -> tuple[str | None, str | None]:
    """``(<Code>, <Message>)`` of an S3-style XML error body, cleaned for logs."""
    text = body.decode("utf-8", errors="replace")
    found: list[str | None] = []
    for name in ("Code", "Message"):
        match = _XML_FIELD[name].search(text)
        value = _UNSAFE_TEXT.sub(" ", match.group(1)).strip()[:REASON_LIMIT] if match else ""
        found.append(value or None)
    return found[0], found[1]


def error_for_status(status: int, body: bytes, retry_after: str | None = None) -> RecallDlError:
    """The error a non-success media response stands for (never contains the URL)."""
    code, message = s3_error_fields(body)
    detail = ": ".join(part for part in (code, message) if part) or "no reason given"
    reason = f"HTTP {status} {detail}"
    expired_message = EXPIRED_MESSAGE in (message or "").lower()
    expired_code = (code or "").lower() in EXPIRED_CODES
    if (status == 403 and expired_message) or (status in (400, 403) and expired_code):
        return RefreshUrl(f"pre-signed URL expired ({reason})")
    if status == 404:
        return NotFound(reason)
    if status == 408:
        return NetworkError(reason)
    if status in (409, 429) or status >= 500:
        return ServerBusy(reason, retry_after=parse_retry_after(retry_after))
    return RemoteRejected(reason)
