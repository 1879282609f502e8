"""Pure resume planning, response decisions and header parsing (no event loop)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from downloader.errors import (
    InvalidResponse,
    NetworkError,
    NotFound,
    RefreshUrl,
    RemoteRejected,
    ServerBusy,
)
from downloader.transfer.plan import (
    FRESH,
    Action,
    Checkpoint,
    ContentRange,
    Position,
    Response,
    decide,
    error_for_status,
    parse_content_range,
    parse_retry_after,
    plan_start,
    request_headers,
    s3_error_fields,
)

# --- Content-Range ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("bytes 0-99/100", ContentRange(0, 99, 100)),
        ("bytes 100-199/1000", ContentRange(100, 199, 1000)),
        ("BYTES 5-5/6", ContentRange(5, 5, 6)),
        ("bytes 0-99/*", ContentRange(0, 99, None)),
        ("bytes */100", ContentRange(None, None, 100)),
        ("  bytes 1-2/3  ", ContentRange(1, 2, 3)),
        (None, None),
        ("", None),
        ("bytes */*", None),
        ("bytes 10-5/100", None),  # end before start
        ("bytes 0-100/100", None),  # end beyond total
        ("bytes 0-99", None),
        ("items 0-99/100", None),
        ("bytes -1-99/100", None),
        ("bytes 0-99/100, 200-299/300", None),
        ("bytes 0x10-20/30", None),
        ("bytes 1-2/3garbage", None),
    ],
)
def test_parse_content_range(header: str | None, expected: ContentRange | None) -> None:
    assert parse_content_range(header) == expected


@given(
    total=st.integers(min_value=1, max_value=2**62),
    data=st.data(),
)
def test_content_range_round_trips(total: int, data: st.DataObject) -> None:
    start = data.draw(st.integers(min_value=0, max_value=total - 1))
    end = data.draw(st.integers(min_value=start, max_value=total - 1))
    value = ContentRange(start, end, total)
    assert parse_content_range(str(value)) == value
    assert parse_content_range(str(ContentRange(None, None, total))) == ContentRange(
        None, None, total
    )


@given(st.text(max_size=80))
def test_content_range_never_raises_and_is_consistent(text: str) -> None:
    parsed = parse_content_range(text)
    if parsed is not None and parsed.start is not None:
        assert parsed.end is not None
        assert 0 <= parsed.start <= parsed.end
        assert parsed.total is None or parsed.end < parsed.total


@pytest.mark.parametrize(
    ("value", "expected"), [("5", 5.0), (" 10 ", 10.0), (None, None), ("soon", None), ("-1", None)]
)
def test_retry_after(value: str | None, expected: float | None) -> None:
    assert parse_retry_after(value) == expected


# --- Checkpoint -------------------------------------------------------------------------


@given(
    offset=st.integers(min_value=0, max_value=2**40),
    extra=st.none() | st.integers(min_value=0, max_value=2**40),
    etag=st.none() | st.text(max_size=40),
)
def test_checkpoint_json_round_trip(offset: int, extra: int | None, etag: str | None) -> None:
    total = None if extra is None else offset + extra
    cp = Checkpoint(offset, etag, total)
    assert Checkpoint.from_json(cp.to_json()) == cp


@pytest.mark.parametrize(
    "data",
    [
        {},
        {"offset": "1"},
        {"offset": True},
        {"offset": 1, "etag": 5},
        {"offset": 1, "total": 1.5},
        {"offset": -1},
        {"offset": 10, "total": 5},
    ],
)
def test_checkpoint_rejects_bad_json(data: dict[str, object]) -> None:
    with pytest.raises(ValueError, match="checkpoint"):
        Checkpoint.from_json(data)


# --- Where to start ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("checkpoint", "size", "offset"),
    [
        (None, 0, 0),
        (None, 5000, 0),  # a partial file without a checkpoint is not trusted
        (Checkpoint(0, '"e"', 100), 50, 0),
        (Checkpoint(40, '"e"', 100), 0, 0),  # partial file lost
        (Checkpoint(40, '"e"', 100), 39, 0),  # shorter than the checkpoint
        (Checkpoint(40, '"e"', 100), 40, 40),
        (Checkpoint(40, '"e"', 100), 90, 40),  # bytes beyond the checkpoint are dropped
        (Checkpoint(100, '"e"', 100), 100, 100),  # complete: a 416 will verify
        (Checkpoint(40, None, None), 40, 40),
    ],
)
def test_plan_start(checkpoint: Checkpoint | None, size: int, offset: int) -> None:
    position = plan_start(checkpoint, size)
    assert position.offset == offset
    if offset:
        assert checkpoint is not None
        assert (position.etag, position.total) == (checkpoint.etag, checkpoint.total)


@given(
    offset=st.integers(min_value=0, max_value=2**40),
    size=st.integers(min_value=0, max_value=2**41),
)
def test_plan_start_never_trusts_more_than_checkpoint_or_file(offset: int, size: int) -> None:
    position = plan_start(Checkpoint(offset, '"e"', None), size)
    assert position.offset in (0, offset)
    assert position.offset <= size


def test_request_headers() -> None:
    assert request_headers(FRESH) == {"Accept-Encoding": "identity"}
    assert request_headers(Position(10, '"abc"', 100, "")) == {
        "Accept-Encoding": "identity",
        "Range": "bytes=10-",
        "If-Range": '"abc"',
    }
    weak = request_headers(Position(10, 'W/"abc"', 100, ""))
    assert "If-Range" not in weak
    assert weak["Range"] == "bytes=10-"


# --- What an answer means ---------------------------------------------------------------

AT_40 = Position(40, '"e1"', 100, "")


@pytest.mark.parametrize(
    ("position", "response", "action", "offset", "total"),
    [
        (FRESH, Response(200, None, "100", '"e1"'), Action.RESTART, 0, 100),
        (FRESH, Response(200, None, None, None), Action.RESTART, 0, None),  # chunked
        (AT_40, Response(200, None, "100", '"e1"'), Action.RESTART, 0, 100),  # Range ignored
        (AT_40, Response(206, "bytes 40-99/100", "60", '"e1"'), Action.APPEND, 40, 100),
        (AT_40, Response(206, "bytes 40-99/100", None, None), Action.APPEND, 40, 100),
        (AT_40, Response(206, "bytes 40-59/100", "20", '"e1"'), Action.APPEND, 40, 100),
        (AT_40, Response(206, "bytes 0-99/100", "100", '"e1"'), Action.REFETCH, 0, None),
        (AT_40, Response(206, "bytes 40-99/120", "60", '"e1"'), Action.REFETCH, 0, None),
        (AT_40, Response(206, "bytes 40-99/100", "60", '"e2"'), Action.REFETCH, 0, None),
        (AT_40, Response(206, None, "60", '"e1"'), Action.REFETCH, 0, None),
        (AT_40, Response(206, "bytes 40-99/*", "60", '"e1"'), Action.REFETCH, 0, None),
        (AT_40, Response(412), Action.REFETCH, 0, None),
        (Position(100, '"e1"', 100, ""), Response(416, "bytes */100"), Action.VERIFY, 100, 100),
        (Position(100, '"e1"', 100, ""), Response(416), Action.VERIFY, 100, 100),
        (Position(100, '"e1"', 100, ""), Response(416, "bytes */120"), Action.REFETCH, 0, None),
        (
            Position(100, '"e1"', 100, ""),
            Response(416, "bytes */100", None, '"e2"'),
            Action.REFETCH,
            0,
            None,
        ),
        (AT_40, Response(416, "bytes */100"), Action.REFETCH, 0, None),
        (AT_40, Response(302), Action.REDIRECT, 40, 100),
        (AT_40, Response(307), Action.REDIRECT, 40, 100),
        (AT_40, Response(403), Action.ERROR, 40, 100),
        (AT_40, Response(404), Action.ERROR, 40, 100),
        (AT_40, Response(503), Action.ERROR, 40, 100),
    ],
)
def test_decide(
    position: Position, response: Response, action: Action, offset: int, total: int | None
) -> None:
    decision = decide(position, response)
    assert decision.action is action, decision.reason
    assert decision.position.offset == offset
    assert decision.position.total == total


def test_decide_keeps_etag_when_206_omits_it() -> None:
    decision = decide(AT_40, Response(206, "bytes 40-99/100"))
    assert decision.position.etag == '"e1"'


@pytest.mark.parametrize(
    ("position", "response"),
    [
        (AT_40, Response(206, "bytes 40-99/100", "10")),  # length disagrees with range
        (FRESH, Response(416, "bytes */0")),
        (AT_40, Response(204)),
        (AT_40, Response(304)),
    ],
)
def test_decide_invalid(position: Position, response: Response) -> None:
    decision = decide(position, response)
    assert decision.action is Action.ERROR
    assert isinstance(decision.error, InvalidResponse)


@given(
    offset=st.integers(min_value=1, max_value=2**40),
    start=st.integers(min_value=0, max_value=2**40),
    length=st.integers(min_value=1, max_value=2**40),
)
def test_decide_appends_only_at_our_offset(offset: int, start: int, length: int) -> None:
    total = start + length
    position = Position(offset, '"e"', None, "")
    header = f"bytes {start}-{total - 1}/{total}"
    decision = decide(position, Response(206, header, str(length), '"e"'))
    if decision.action is Action.APPEND:
        assert start == offset
        assert decision.position.total == total
    else:
        assert decision.action is Action.REFETCH
        assert decision.position.offset == 0


# --- Errors -----------------------------------------------------------------------------

EXPIRED = (
    b'<?xml version="1.0" encoding="UTF-8"?><Error><Code>AccessDenied</Code>'
    b"<Message>Request has expired</Message><Expires>2024-01-01T00:00:00Z</Expires></Error>"
)
DENIED = b"<Error><Code>AccessDenied</Code><Message>Access Denied</Message></Error>"


@pytest.mark.parametrize(
    ("status", "body", "kind", "text"),
    [
        (403, EXPIRED, RefreshUrl, "Request has expired"),
        (400, b"<Error><Code>ExpiredToken</Code><Message>x</Message></Error>", RefreshUrl, ""),
        (403, DENIED, RemoteRejected, "HTTP 403 AccessDenied: Access Denied"),
        (400, b"<Error><Code>InvalidArgument</Code></Error>", RemoteRejected, "InvalidArgument"),
        (404, b"<Error><Code>NoSuchKey</Code></Error>", NotFound, "NoSuchKey"),
        (404, b"", NotFound, "no reason given"),
        (410, b"gone", RemoteRejected, "HTTP 410"),
        (408, b"", NetworkError, "408"),
        (429, b"", ServerBusy, "429"),
        (500, b"<Error><Code>InternalError</Code></Error>", ServerBusy, "InternalError"),
        (503, b"<Error><Code>SlowDown</Code></Error>", ServerBusy, "SlowDown"),
    ],
)
def test_error_for_status(status: int, body: bytes, kind: type[Exception], text: str) -> None:
    error = error_for_status(status, body, "7")
    assert type(error) is kind
    assert text in error.reason
    if isinstance(error, ServerBusy):
        assert error.retry_after == 7.0


def test_s3_error_fields_are_cleaned() -> None:
    body = b"<Error><Code>Bad\x00\n\x1bCode</Code><Message>" + b"m" * 500 + b"</Message></Error>"
    code, message = s3_error_fields(body)
    assert code == "Bad Code"
    assert message is not None
    assert len(message) == 200


@given(st.binary(max_size=300))
def test_error_for_status_never_raises(body: bytes) -> None:
    for status in (400, 403, 404, 500):
        assert error_for_status(status, body).reason
