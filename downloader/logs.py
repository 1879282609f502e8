"""structlog set-up: JSON lines off a terminal, the console renderer on one, secrets redacted.

Pre-signed media URLs and ``?token=`` manifest links are bearer credentials for hours, so the
redaction processor strips the query string from every URL it finds in any value (including
exception text, which aiohttp fills with the request URL), and blanks keys that name secrets.
Registered secret values (the API key, the webhook secret) are replaced wherever they appear.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Iterable, MutableMapping
from typing import Any, TextIO

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
# Query-string fragments without a scheme, e.g. "X-Amz-Signature=abc" in an error message.
_BARE_SIGNED = re.compile(
    r"(?i)\b(x-amz-[a-z-]+|signature|token|awsaccesskeyid|expires)=[^&\s'\"<>]+"
)
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
    text = _BARE_SIGNED.sub(lambda m: m.group(1) + "=" + REDACTED, text)
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


def configure_logging(
    level: str = "info",
    fmt: str = "auto",
    stream: TextIO | None = None,
    secrets: Iterable[str | None] = (),
) -> None:
    """Configure structlog once per process. ``fmt``: auto | json | console."""
    stream = stream or sys.stderr
    for secret in secrets:
        register_secret(secret)
    use_console = fmt == "console" or (fmt == "auto" and stream.isatty())
    renderer: Any = (
        structlog.dev.ConsoleRenderer(
            colors=stream.isatty(), exception_formatter=structlog.dev.plain_traceback
        )
        if use_console
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
