"""Pure classification of API answers, Retry-After parsing and the stamina hook."""

from __future__ import annotations

import datetime as dt
from collections.abc import Awaitable, Callable

import pytest
import stamina

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
from downloader.recall.retry import (
    RetryHook,
    RetryPolicy,
    body_message,
    error_for_status,
    is_transient,
    manifest_error_for_status,
    parse_retry_after,
)

NOW = dt.datetime(2025, 6, 1, 12, 0, 0, tzinfo=dt.UTC)


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (None, 5.0),
        ("", 5.0),
        ("  ", 5.0),
        ("7", 7.0),
        ("0", 0.0),
        ("2.5", 2.5),
        ("-3", 5.0),
        ("nan", 5.0),
        ("inf", 5.0),
        ("soon", 5.0),
        ("Sun, 01 Jun 2025 12:00:30 GMT", 30.0),
        ("Sun, 01 Jun 2025 11:00:00 GMT", 0.0),
    ],
)
def test_parse_retry_after(header: str | None, expected: float) -> None:
    assert parse_retry_after(header, now=NOW) == pytest.approx(expected)


def test_parse_retry_after_default_is_configurable() -> None:
    assert parse_retry_after("bogus", default=1.5) == 1.5


def classify(status: int, body: bytes = b"", ctype: str | None = None, **kw: str) -> RecallDlError:
    error = error_for_status(
        status,
        what="bot b1",
        host="eu-central-1.recall.ai",
        region="eu-central-1",
        body=body,
        content_type=ctype,
        **kw,  # type: ignore[arg-type]
    )
    assert error is not None
    return error


def test_2xx_is_not_an_error() -> None:
    for status in (200, 201, 204):
        assert error_for_status(status, what="x", host="h", region="r") is None


def test_401_names_the_region_and_host() -> None:
    error = classify(401, b'{"detail":"Invalid token."}', "application/json")
    assert isinstance(error, AuthError)
    assert "HTTP 401" in str(error)
    assert "eu-central-1.recall.ai" in str(error)
    assert "RECALL_REGION=eu-central-1" in str(error)
    assert "region" in str(error)


def test_404_is_not_found() -> None:
    error = classify(404, b'{"detail":"Not found."}', "application/json")
    assert isinstance(error, NotFound)
    assert str(error) == "bot b1 not found"


@pytest.mark.parametrize("status", [400, 402, 405, 422])
def test_other_4xx_are_rejections_with_the_body_message(status: int) -> None:
    error = classify(status, b'{"detail": "cannot_command_completed_bot"}', "application/json")
    assert isinstance(error, RemoteRejected)
    assert f"HTTP {status}" in str(error)
    assert "cannot_command_completed_bot" in str(error)


def test_400_field_errors_are_summarised() -> None:
    error = classify(400, b'{"status": ["not a valid choice"]}', "application/json")
    assert "not a valid choice" in str(error)


def test_waf_403_with_html_is_a_clear_rejection() -> None:
    html = b"<!DOCTYPE HTML><HTML><HEAD><TITLE>ERROR: The request could not be satisfied"
    error = classify(403, html, "text/html")
    assert isinstance(error, RemoteRejected)
    assert "firewall" in str(error)
    assert "HTTP 403" in str(error)
    assert "<" not in str(error)


def test_403_with_a_json_detail_keeps_it() -> None:
    error = classify(403, b'{"detail":"You do not have permission."}', "application/json")
    assert isinstance(error, RemoteRejected)
    assert "You do not have permission." in str(error)


@pytest.mark.parametrize("status", [409, 500, 502, 503, 504, 507])
def test_5xx_and_409_are_transient(status: int) -> None:
    error = classify(status, b"<html>busy</html>", "text/html")
    assert isinstance(error, ServerBusy)
    assert error.retry_after is None
    assert is_transient(error)


def test_503_with_retry_after_carries_it() -> None:
    error = classify(503, retry_after="3")
    assert isinstance(error, ServerBusy)
    assert error.retry_after == 3.0


def test_429_carries_retry_after_or_the_default() -> None:
    error = classify(429, retry_after="4")
    assert isinstance(error, RateLimited)
    assert error.retry_after == 4.0
    assert not is_transient(error)  # paused by the client, not retried by stamina
    missing = classify(429)
    assert isinstance(missing, RateLimited)
    assert missing.retry_after == 5.0


def test_unexpected_redirect_is_invalid() -> None:
    assert isinstance(classify(301), InvalidResponse)


def test_messages_are_truncated_and_flat() -> None:
    message = body_message(b'{"detail": "' + b"x " * 1000 + b'"}')
    assert message is not None
    assert len(message) <= 300
    assert body_message(b"not json") is None
    assert body_message(b"") is None


def test_manifest_classification() -> None:
    expired = b"<Error><Code>AccessDenied</Code><Message>Request has expired</Message></Error>"
    assert isinstance(manifest_error_for_status(403, what="m", body=expired), RefreshUrl)
    assert isinstance(manifest_error_for_status(403, what="m", body=b"<Error/>"), RemoteRejected)
    assert isinstance(manifest_error_for_status(404, what="m"), NotFound)
    assert isinstance(manifest_error_for_status(502, what="m"), ServerBusy)
    assert isinstance(manifest_error_for_status(429, what="m", retry_after="2"), ServerBusy)
    assert manifest_error_for_status(200, what="m") is None


def test_retry_hook() -> None:
    hook = RetryHook(max_wait=10.0)
    assert hook(ServerBusy("x")) is True
    assert hook(NetworkError("x")) is True
    assert hook(ServerBusy("x", retry_after=3.0)) == 3.0
    assert hook(ServerBusy("x", retry_after=10.0)) == 10.0
    # Longer than the in-call budget: not shortened, handed to the job layer instead.
    assert hook(ServerBusy("x", retry_after=10.5)) is False
    assert hook(ServerBusy("x", retry_after=600.0)) is False
    assert hook(NotFound("x")) is False
    assert hook(RateLimited("x", retry_after=1.0)) is False
    assert hook(ValueError("x")) is False


def test_policy_is_bounded() -> None:
    policy = RetryPolicy()
    assert 1 < policy.attempts <= 10
    assert policy.timeout is not None and policy.timeout <= 120
    assert policy.max_rate_limited >= 1


async def run_retrying(policy: RetryPolicy, fn: Callable[[], Awaitable[None]]) -> None:
    async for attempt in stamina.retry_context(
        on=RetryHook(policy.wait_max), attempts=policy.attempts, timeout=policy.timeout
    ):
        with attempt:
            await fn()


@pytest.mark.anyio
async def test_stamina_retries_transient_errors_a_bounded_number_of_times() -> None:
    """The same stamina call the client makes: attempts bound, final error surfaces."""
    policy = RetryPolicy(attempts=4)
    calls = 0

    async def flaky() -> None:
        nonlocal calls
        calls += 1
        raise ServerBusy("HTTP 503")

    with pytest.raises(ServerBusy):
        await run_retrying(policy, flaky)
    assert calls == 4

    calls = 0

    async def final() -> None:
        nonlocal calls
        calls += 1
        raise NotFound("gone")

    with pytest.raises(NotFound):
        await run_retrying(policy, final)
    assert calls == 1
