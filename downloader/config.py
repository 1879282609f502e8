"""One frozen settings object: defaults < TOML file < environment < command-line flags.

Only this module reads the environment and the config file. Every value is validated and
every error names the setting and where its value came from, so that ``recall-dl`` can say
exactly what to fix and exit 2 before starting anything.
"""

from __future__ import annotations

import dataclasses
import os
import stat
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from yarl import URL

from downloader.errors import ConfigError

DEFAULT_CONFIG_PATH = Path("/etc/recall-dl/recall-dl.toml")
REGIONS = ("us-east-1", "us-west-2", "eu-central-1", "ap-northeast-1")
ENV_PREFIX = "RECALL_DL_"
# Variables Recall users already know keep their Recall names.
ENV_ALIASES = {
    "api_key": "RECALL_API_KEY",
    "api_url": "RECALL_API_URL",
    "region": "RECALL_REGION",
    "webhook_secret": "RECALL_WEBHOOK_SECRET",
}
CREDENTIAL_FILES = {"api_key": "recall_api_key", "webhook_secret": "recall_webhook_secret"}
LOG_LEVELS = ("debug", "info", "warning", "error")
LOG_FORMATS = ("auto", "json", "console")
MIB = 1 << 20


class Secret:
    """A string that never shows itself in a repr, a log line or a traceback."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


@dataclass(frozen=True)
class Settings:
    # Recall workspace
    api_key: Secret | None = None
    api_key_file: Path | None = None
    api_url: str = ""  # derived from region when empty
    region: str = "us-east-1"
    allowed_hosts: tuple[str, ...] = ()
    # Where things go
    state: str = ""  # sqlite path or URL, or postgresql://…; empty = the command's default
    out: Path = Path("recordings")
    # Concurrency and politeness
    concurrency: int = 8
    per_host_concurrency: int = 8
    per_recording_concurrency: int = 4
    api_concurrency: int = 4
    list_rate_limit: int = 60
    retrieve_rate_limit: int = 300
    rate_window_seconds: float = 60.0
    # Timeouts and transfer shape
    api_timeout_seconds: float = 30.0
    connect_timeout_seconds: float = 30.0
    read_timeout_seconds: float = 60.0
    chunk_bytes: int = 1 * MIB
    write_buffer_bytes: int = 1 * MIB
    checkpoint_bytes: int = 4 * MIB
    # Job life
    max_attempts: int = 8
    lease_seconds: float = 60.0
    poll_initial_seconds: float = 15.0
    poll_max_seconds: float = 300.0
    video_separate_grace_seconds: float = 600.0
    url_max_age_seconds: float = 5 * 3600.0
    # Service
    http_listen: str = "127.0.0.1:8787"
    webhook_secret: Secret | None = None
    webhook_secret_file: Path | None = None
    webhooks_enabled: bool = True
    sweep_enabled: bool = True
    sweep_interval_seconds: float = 600.0
    sweep_overlap_seconds: float = 300.0
    grace_period_seconds: float = 30.0
    hard_deadline_seconds: float = 15.0
    # Logging
    log_level: str = "info"
    log_format: str = "auto"

    @property
    def base_url(self) -> str:
        return self.api_url or f"https://{self.region}.recall.ai"

    def require_api_key(self) -> Secret:
        if self.api_key is None:
            raise ConfigError(
                "no Recall API key: set RECALL_API_KEY, api_key_file in the config file, "
                "--api-key-file, or a systemd credential named recall_api_key"
            )
        return self.api_key


def _parse_int(raw: object) -> int:
    if isinstance(raw, bool):
        raise ValueError("expected an integer")
    if isinstance(raw, int):
        return raw
    text = str(raw).strip().lower()
    for suffix, factor in (("k", 1 << 10), ("m", MIB), ("g", 1 << 30)):
        if text.endswith(suffix):
            return int(text[:-1]) * factor
    return int(text)


def _parse_float(raw: object) -> float:
    if isinstance(raw, bool):
        raise ValueError("expected a number")
    return float(raw)  # type: ignore[arg-type]


def _parse_bool(raw: object) -> bool:
    if isinstance(raw, bool):
        return raw
    text = str(raw).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    raise ValueError("expected true or false")


def _parse_hosts(raw: object) -> tuple[str, ...]:
    items = raw if isinstance(raw, list | tuple) else str(raw).split(",")
    return tuple(str(h).strip().lower() for h in items if str(h).strip())


def _parse_str(raw: object) -> str:
    if not isinstance(raw, str):
        raise ValueError("expected a string")
    return raw


def _parse_path(raw: object) -> Path:
    return Path(_parse_str(raw)).expanduser()


def _parse_secret(raw: object) -> Secret:
    value = _parse_str(raw).strip()
    if not value:
        raise ValueError("must not be empty")
    return Secret(value)


_PARSERS: dict[type, Callable[[object], Any]] = {
    int: _parse_int,
    float: _parse_float,
    bool: _parse_bool,
    str: _parse_str,
}
_SPECIAL: dict[str, Callable[[object], Any]] = {
    "api_key": _parse_secret,
    "webhook_secret": _parse_secret,
    "api_key_file": _parse_path,
    "webhook_secret_file": _parse_path,
    "out": _parse_path,
    "allowed_hosts": _parse_hosts,
}
FIELD_NAMES = tuple(f.name for f in dataclasses.fields(Settings))


def _parser_for(name: str) -> Callable[[object], Any]:
    if name in _SPECIAL:
        return _SPECIAL[name]
    default = getattr(Settings(), name)
    return _PARSERS[type(default)]


def env_name(name: str) -> str:
    return ENV_ALIASES.get(name, ENV_PREFIX + name.upper())


def _coerce(name: str, raw: object, source: str) -> Any:
    try:
        return _parser_for(name)(raw)
    except (ValueError, TypeError) as exc:
        shown = "***" if name in CREDENTIAL_FILES else repr(raw)
        raise ConfigError(f"invalid value {shown} for {name} (from {source}): {exc}") from None


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as handle:
            data = tomllib.load(handle)
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist") from None
    except PermissionError:
        raise ConfigError(f"config file {path} is not readable") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {exc}") from None
    unknown = sorted(set(data) - set(FIELD_NAMES))
    if unknown:
        raise ConfigError(
            f"unknown setting(s) {', '.join(unknown)} in {path}; "
            "see config/recall-dl.toml for every valid key"
        )
    return data


def read_secret_file(path: Path, setting: str) -> Secret:
    """Read a secret from a file that only its owner can read (like ssh does with keys)."""
    try:
        info = path.stat()
        if info.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise ConfigError(
                f"{setting} {path} is readable by group or others; run: chmod 600 {path}"
            )
        value = path.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        raise ConfigError(f"{setting} {path} does not exist") from None
    except PermissionError:
        raise ConfigError(f"{setting} {path} is not readable") from None
    if not value:
        raise ConfigError(f"{setting} {path} is empty")
    return Secret(value)


def _credential(name: str, env: Mapping[str, str]) -> Secret | None:
    """systemd LoadCredential= puts secrets in $CREDENTIALS_DIRECTORY, readable only by us."""
    directory = env.get("CREDENTIALS_DIRECTORY")
    if not directory:
        return None
    path = Path(directory) / CREDENTIAL_FILES[name]
    if not path.exists():
        return None
    value = path.read_text(encoding="utf-8").strip()
    return Secret(value) if value else None


def _validate(settings: Settings, sources: Mapping[str, str]) -> None:
    def bad(name: str, why: str) -> ConfigError:
        return ConfigError(f"invalid {name} (from {sources.get(name, 'defaults')}): {why}")

    if settings.region not in REGIONS:
        raise bad("region", f"{settings.region!r} is not one of {', '.join(REGIONS)}")
    if settings.api_url:
        url = URL(settings.api_url)
        if url.scheme not in ("http", "https") or not url.host:
            raise bad("api_url", f"{settings.api_url!r} is not an http(s) URL")
    for name in (
        "concurrency",
        "per_host_concurrency",
        "per_recording_concurrency",
        "api_concurrency",
        "list_rate_limit",
        "retrieve_rate_limit",
        "chunk_bytes",
        "write_buffer_bytes",
        "checkpoint_bytes",
        "max_attempts",
    ):
        if getattr(settings, name) < 1:
            raise bad(name, "must be at least 1")
    for name in FIELD_NAMES:
        value = getattr(settings, name)
        if name.endswith("_seconds") and value <= 0:
            raise bad(name, "must be greater than 0")
    if settings.log_level not in LOG_LEVELS:
        raise bad("log_level", f"must be one of {', '.join(LOG_LEVELS)}")
    if settings.log_format not in LOG_FORMATS:
        raise bad("log_format", f"must be one of {', '.join(LOG_FORMATS)}")
    host, sep, port = settings.http_listen.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise bad("http_listen", "expected HOST:PORT, e.g. 127.0.0.1:8787")


def load_settings(
    *,
    flags: Mapping[str, object] | None = None,
    config_path: Path | None = None,
    env: Mapping[str, str] | None = None,
) -> Settings:
    """Merge the layers, validate, and resolve secrets from files and credentials."""
    env = os.environ if env is None else env
    values: dict[str, Any] = {}
    sources: dict[str, str] = {}

    path = config_path
    if path is None and DEFAULT_CONFIG_PATH.exists():
        path = DEFAULT_CONFIG_PATH
    if path is not None:
        for name, raw in _read_toml(path).items():
            values[name] = _coerce(name, raw, f"config file {path}")
            sources[name] = f"config file {path}"
    for name in FIELD_NAMES:
        variable = env_name(name)
        if variable in env and env[variable] != "":
            values[name] = _coerce(name, env[variable], f"environment {variable}")
            sources[name] = f"environment {variable}"
    for name, raw in (flags or {}).items():
        if raw is None:
            continue
        if name not in FIELD_NAMES:
            raise ConfigError(f"unknown setting {name}")
        option = "--" + name.replace("_", "-")
        values[name] = raw if not isinstance(raw, str) else _coerce(name, raw, option)
        sources[name] = f"option {option}"

    for secret, file_setting in (
        ("api_key", "api_key_file"),
        ("webhook_secret", "webhook_secret_file"),
    ):
        if secret not in values:
            if file_setting in values:
                values[secret] = read_secret_file(values[file_setting], file_setting)
                sources[secret] = sources[file_setting]
            else:
                credential = _credential(secret, env)
                if credential is not None:
                    values[secret] = credential
                    sources[secret] = "$CREDENTIALS_DIRECTORY"
    settings = Settings(**values)
    _validate(settings, sources)
    return settings


def settings_with(settings: Settings, **changes: Any) -> Settings:
    """A copy with some fields changed (validated again)."""
    updated = dataclasses.replace(settings, **changes)
    _validate(updated, dict.fromkeys(changes, "override"))
    return updated
