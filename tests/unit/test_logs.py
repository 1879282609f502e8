"""No secret or pre-signed query string can reach a log line."""

from __future__ import annotations

import io
import json
import logging
import re
import sys
from collections.abc import Iterator

import aiohttp
import pytest
import stamina
import structlog
from yarl import URL

from downloader.logs import STDLIB_HANDLER_NAME, configure_logging, scrub_text

PRESIGNED = (
    "https://recallai-production-bot-data.s3.amazonaws.com/ws/rec/video.mp4"
    "?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=ASIAXYZ&X-Amz-Signature=deadbeefcafe"
)
ENCODED = "https%3A%2F%2Fhost.example%2Fp%3Ftoken%3Denc-tok-555%26X-Amz-Signature%3Dencsig"
SECRETS = (
    "deadbeefcafe",
    "ASIAXYZ",
    "api-key-0123456789",
    "whsec_c2VjcmV0",
    "tok-987",
    "enc-tok-555",
    "encsig",
)
SNAKE_CASE = re.compile(r"^[a-z][a-z0-9_]*$")


@pytest.fixture(autouse=True)
def _restore_global_logging() -> Iterator[None]:
    """configure_logging changes process-wide state: undo what outlives the test."""
    root = logging.getLogger()
    level = root.level
    yield
    for handler in [h for h in root.handlers if h.get_name() == STDLIB_HANDLER_NAME]:
        root.removeHandler(handler)
    root.setLevel(level)
    stamina.instrumentation.set_on_retry_hooks(None)


class FakeTty(io.StringIO):
    def __init__(self, tty: bool) -> None:
        super().__init__()
        self.tty = tty

    def isatty(self) -> bool:
        return self.tty


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


def test_scrub_passwords_in_urls() -> None:
    text = scrub_text("state=postgresql://app:s3kret@db:5432/recall_dl ok")
    assert "s3kret" not in text
    assert "postgresql://app:" in text and "@db:5432/recall_dl ok" in text
    # no password, or a port: nothing to hide
    assert (
        scrub_text("postgresql://app@db/x http://h:8080/p")
        == "postgresql://app@db/x http://h:8080/p"
    )


def test_scrub_percent_encoded_urls() -> None:
    for text, secret in (
        (ENCODED, "enc-tok-555"),
        ("next=https%3A%2F%2Fh%2Fp%3Fsig%3Dsecret-1%26a%3D1 then", "secret-1"),
        ("https%253A%252F%252Fh%252Fp%253FX-Amz-Signature%253Dsecret-2", "secret-2"),
        ("HTTPS%3a%2f%2fh%2fp%3fx%3dsecret-3", "secret-3"),
        ("state%3Dabc%26token%3Dsecret-4", "secret-4"),
    ):
        scrubbed = scrub_text(text)
        assert secret not in scrubbed, scrubbed
    assert scrub_text("https%3A%2F%2Fhost%2Fno-query") == "https%3A%2F%2Fhost%2Fno-query"


def test_stdlib_logging_goes_through_the_redaction(captured: io.StringIO) -> None:
    logging.getLogger("aiohttp.client").warning("leak %s", PRESIGNED)
    logging.getLogger("aiohttp.client").error("encoded %s", ENCODED)
    logging.getLogger("x").warning("headers %s", {"Authorization": "Token api-key-0123456789"})
    try:
        raise ValueError(f"could not fetch {PRESIGNED}")
    except ValueError:
        logging.getLogger("asyncio").exception("task failed")
    text = captured.getvalue()
    assert_clean(text)
    lines = [json.loads(line) for line in text.splitlines()]
    assert len(lines) == 4
    first = lines[0]
    assert first["event"] == "library_log"
    assert first["logger"] == "aiohttp.client"
    assert first["level"] == "warning"
    assert first["message"].startswith("leak https://recallai-production-bot-data.s3")
    assert "ValueError" in lines[3]["exception"]


def test_stdlib_info_chatter_is_left_out(captured: io.StringIO) -> None:
    logging.getLogger("aiohttp.access").info("GET /x?token=tok-987")
    assert captured.getvalue() == ""


def test_format_follows_stdout_not_the_log_stream(monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue 2: JSON lines when stdout is not a terminal, the console renderer when it is."""
    monkeypatch.setattr(sys, "stdout", FakeTty(True))
    stream = FakeTty(False)
    configure_logging("info", "auto", stream=stream)
    structlog.get_logger("t").info("hello_console", n=1)
    logging.getLogger("lib").warning("from a library")
    with pytest.raises(json.JSONDecodeError):
        json.loads(stream.getvalue().splitlines()[0])
    assert "hello_console" in stream.getvalue()
    assert "from a library" in stream.getvalue()

    monkeypatch.setattr(sys, "stdout", FakeTty(False))
    stream = FakeTty(True)
    configure_logging("info", "auto", stream=stream)
    structlog.get_logger("t").info("hello_json")
    logging.getLogger("lib").warning("from a library")
    events = [json.loads(line)["event"] for line in stream.getvalue().splitlines()]
    assert events == ["hello_json", "library_log"]

    # An explicit format wins over the terminal test.
    monkeypatch.setattr(sys, "stdout", FakeTty(True))
    stream = FakeTty(True)
    configure_logging("info", "json", stream=stream)
    structlog.get_logger("t").info("forced_json")
    assert json.loads(stream.getvalue())["event"] == "forced_json"


def test_reconfiguring_keeps_one_stdlib_handler(captured: io.StringIO) -> None:
    configure_logging("info", "json", stream=captured)
    logging.getLogger("lib").warning("once")
    assert captured.getvalue().count("once") == 1


@pytest.mark.anyio
async def test_stamina_logs_nothing_of_its_own(captured: io.StringIO) -> None:
    calls = 0

    async def always_failing() -> None:
        nonlocal calls
        async for attempt in stamina.retry_context(on=ConnectionError, attempts=3):
            with attempt:
                calls += 1
                raise ConnectionError("https://h/p?token=tok-987")

    with stamina.set_testing(True, attempts=3), pytest.raises(ConnectionError):
        await always_failing()
    assert calls == 3
    assert stamina.instrumentation.get_on_retry_hooks() == ()
    text = captured.getvalue()
    assert "stamina" not in text
    assert_clean(text)
    for line in text.splitlines():
        assert SNAKE_CASE.match(json.loads(line)["event"])
