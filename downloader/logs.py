"""structlog set-up: JSON lines when stdout is not a terminal, the console renderer when it is;
secrets redacted.

Pre-signed media URLs and ``?token=`` manifest links are bearer credentials for hours, so the
redaction processor strips the query string from every URL it finds in any value (including
exception text, which aiohttp fills with the request URL, and percent-encoded URLs carried
inside other text), and blanks keys that name secrets. Registered secret values (the API key,
the webhook secret) are replaced wherever they appear.

Records of the standard library's :mod:`logging` (aiohttp, asyncio, …) go through the same
redaction and renderer, to the same stream: their text becomes the ``message`` of a
``library_log`` event, so every event name stays snake_case. stamina's own retry log
(``stamina.retry_scheduled``) is switched off: the client logs ``api_retry`` once per retry.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Iterable, MutableMapping
from typing import Any, TextIO

import stamina.instrumentation
import structlog

REDACTED = "[redacted]"
SECRET_KEY_PARTS = (
    "authorization",
    "api_key",
    "apikey",
    "token",
    "signature",
    "secret",
    "password",
)
SECRET_KEY_PREFIXES = ("x-amz-", "x_amz_")
# A URL's query string, up to whitespace, a quote or a closing bracket.
_URL_QUERY = re.compile(r"(?P<base>\b[a-zA-Z][a-zA-Z0-9+.-]*://[^\s?#'\"<>]*)\?[^\s'\"<>)\]]*")
# A percent-encoded URL (once or more: %3A, %253A, …) and its encoded or plain query string,
# e.g. "https%3A%2F%2Fhost%2Fp%3Ftoken%3Dabc" inside another URL or a message.
_PCT = r"%(?:25)*"
_ENCODED_URL_QUERY = re.compile(
    rf"(?i)(?P<base>[a-z][a-z0-9+.-]*{_PCT}3A{_PCT}2F{_PCT}2F"
    rf"(?:(?!{_PCT}3F)[^\s?#'\"<>])*)(?:\?|{_PCT}3F)[^\s'\"<>)\]]*"
)
# Query-string fragments without a scheme, e.g. "X-Amz-Signature=abc" in an error message,
# plain or percent-encoded ("%26token%3Dabc").
_BARE_SIGNED = re.compile(
    r"(?i)(?:\b|(?<=%26)|(?<=%3F)|(?<=%2526)|(?<=%253F))"
    rf"(x-amz-[a-z-]+|signature|token|awsaccesskeyid|expires)(=|{_PCT}3D)[^&\s'\"<>]+"
)
# scheme://user:password@host — a password in a URL (e.g. postgresql://app:pw@db/recall_dl).
_URL_PASSWORD = re.compile(r"(\b[a-zA-Z][a-zA-Z0-9+.-]*://[^\s:/@'\"<>]*:)[^\s@/'\"<>]*(@)")
_AUTH_HEADER = re.compile(r"(?i)(authorization['\"]?\s*[:=]\s*['\"]?)(token\s+)?[^\s'\",}]+")

_registered_secrets: set[str] = set()


def register_secret(value: str | None) -> None:
    """Make ``value`` disappear from every log line from now on."""
    if value and len(value) >= 4:
        _registered_secrets.add(value)


def scrub_text(text: str) -> str:
    for secret in _registered_secrets:
        if secret in text:
            text = text.replace(secret, REDACTED)
    text = _URL_QUERY.sub(lambda m: m.group("base") + "?" + REDACTED, text)
    text = _ENCODED_URL_QUERY.sub(lambda m: m.group("base") + "?" + REDACTED, text)
    text = _BARE_SIGNED.sub(lambda m: m.group(1) + m.group(2) + REDACTED, text)
    text = _URL_PASSWORD.sub(lambda m: m.group(1) + REDACTED + m.group(2), text)
    return _AUTH_HEADER.sub(lambda m: m.group(1) + REDACTED, text)


def _is_secret_key(key: str) -> bool:
    lowered = key.lower()
    if lowered in ("token_count",):
        return False
    return any(p in lowered for p in SECRET_KEY_PARTS) or lowered.startswith(SECRET_KEY_PREFIXES)


def _scrub_value(value: Any) -> Any:
    if isinstance(value, str):
        return scrub_text(value)
    if isinstance(value, BaseException):
        return scrub_text(f"{type(value).__name__}: {value}")
    if isinstance(value, dict):
        return {
            k: REDACTED if _is_secret_key(str(k)) else _scrub_value(v) for k, v in value.items()
        }
    if isinstance(value, list | tuple):
        return [_scrub_value(v) for v in value]
    if isinstance(value, int | float | bool) or value is None:
        return value
    return scrub_text(repr(value)) if not isinstance(value, str) else value


def redact_processor(
    _logger: Any, _method: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """structlog processor: runs last before rendering, after exceptions were formatted."""
    for key in list(event_dict):
        value = event_dict[key]
        if key != "event" and _is_secret_key(key):
            event_dict[key] = REDACTED
        else:
            event_dict[key] = _scrub_value(value)
    return event_dict


def _level_number(level: str) -> int:
    return int(logging.getLevelName(level.upper()))


STDLIB_HANDLER_NAME = "recall-dl"
LIBRARY_EVENT = "library_log"


def _library_event(
    _logger: Any, _method: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """A stdlib record's free text becomes ``message``; the event name stays snake_case."""
    event_dict["message"] = event_dict.get("event")
    event_dict["event"] = LIBRARY_EVENT
    return event_dict


def _use_console(fmt: str) -> bool:
    """``auto`` picks the console renderer when stdout is a terminal (issue 2), else JSON."""
    if fmt != "auto":
        return fmt == "console"
    try:
        return sys.stdout is not None and sys.stdout.isatty()
    except ValueError:  # stdout closed
        return False


def _is_tty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except ValueError:
        return False


def _install_stdlib_handler(stream: TextIO, level: int, renderer: Any) -> None:
    """Route the standard library's records through the redaction and the same renderer.

    Third-party libraries log warnings and errors (their info chatter is not ours); a
    stricter ``level`` applies to them too.
    """
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[
            structlog.stdlib.add_log_level,
            structlog.stdlib.add_logger_name,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            _library_event,
        ],
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            redact_processor,
            renderer,
        ],
    )
    handler = logging.StreamHandler(stream)
    handler.set_name(STDLIB_HANDLER_NAME)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    for old in [h for h in root.handlers if h.get_name() == STDLIB_HANDLER_NAME]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(max(level, logging.WARNING))


def configure_logging(
    level: str = "info",
    fmt: str = "auto",
    stream: TextIO | None = None,
    secrets: Iterable[str | None] = (),
) -> None:
    """Configure structlog (and stdlib logging) once per process. ``fmt``: auto | json | console.

    Log lines go to ``stream`` (default stderr); ``auto`` chooses the format from stdout.
    """
    stream = stream or sys.stderr
    for secret in secrets:
        register_secret(secret)
    renderer: Any = (
        structlog.dev.ConsoleRenderer(
            colors=_is_tty(stream), exception_formatter=structlog.dev.plain_traceback
        )
        if _use_console(fmt)
        else structlog.processors.JSONRenderer()
    )
    # Exceptions are rendered to text before redaction in both formats, so a URL inside
    # a traceback is scrubbed too (the console renderer's pretty tracebacks would bypass it).
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            redact_processor,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(_level_number(level)),
        logger_factory=structlog.PrintLoggerFactory(file=stream),
        cache_logger_on_first_use=False,
    )
    _install_stdlib_handler(stream, _level_number(level), renderer)
    # stamina would log "stamina.retry_scheduled" (not snake_case) next to our "api_retry",
    # and count retries in the global Prometheus registry nobody serves: no hooks at all.
    stamina.instrumentation.set_on_retry_hooks([])
