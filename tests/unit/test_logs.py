"""No secret or pre-signed query string can reach a log line."""

from __future__ import annotations

import io
import json

import aiohttp
import pytest
import structlog
from yarl import URL

from downloader.logs import configure_logging, scrub_text

PRESIGNED = (
    "https://recallai-production-bot-data.s3.amazonaws.com/ws/rec/video.mp4"
    "?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=ASIAXYZ&X-Amz-Signature=deadbeefcafe"
)
SECRETS = ("deadbeefcafe", "ASIAXYZ", "api-key-0123456789", "whsec_c2VjcmV0", "tok-987")


@pytest.fixture
def captured() -> io.StringIO:
    stream = io.StringIO()
    configure_logging(
        "debug", "json", stream=stream, secrets=["api-key-0123456789", "whsec_c2VjcmV0"]
    )
    return stream


def assert_clean(text: str) -> None:
    for secret in SECRETS:
        assert secret not in text, f"{secret} leaked into: {text}"


def test_urls_keys_and_registered_secrets_are_redacted(captured: io.StringIO) -> None:
    log = structlog.get_logger("t")
    log.info(
        "download",
        url=PRESIGNED,
        manifest="https://us-east-1.recall.ai/api/v1/download/x?token=tok-987",
    )
    log.info("headers", headers={"Authorization": "Token api-key-0123456789", "Accept": "json"})
    log.info("config", api_key="api-key-0123456789", webhook_secret="whsec_c2VjcmV0")
    log.info("free_text", note="sent Token api-key-0123456789 to whsec_c2VjcmV0 host")
    text = captured.getvalue()
    assert_clean(text)
    lines = [json.loads(line) for line in text.splitlines()]
    assert lines[0]["url"].startswith(
        "https://recallai-production-bot-data.s3.amazonaws.com/ws/rec/video.mp4"
    )
    assert lines[1]["headers"]["Accept"] == "json"


def test_exceptions_carrying_urls_are_scrubbed(captured: io.StringIO) -> None:
    log = structlog.get_logger("t")
    request_info = aiohttp.RequestInfo(URL(PRESIGNED), "GET", {}, URL(PRESIGNED))  # type: ignore[arg-type]
    try:
        raise aiohttp.ClientResponseError(request_info, (), status=403, message="Forbidden")
    except aiohttp.ClientResponseError as exc:
        log.exception("media_failed", error=exc)
    try:
        raise ValueError(f"could not fetch {PRESIGNED}")
    except ValueError:
        log.exception("boom")
    assert_clean(captured.getvalue())


def test_scrub_bare_query_fragments() -> None:
    assert "abc" not in scrub_text("failed: X-Amz-Signature=abc&foo=1")
    assert "zzz" not in scrub_text("Authorization: Token zzz")
