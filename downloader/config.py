"""One frozen settings object: defaults < TOML file < environment < command-line flags.

Only this module reads the environment and the config file. Every value is validated and
every error names the setting and where its value came from, so that ``recall-dl`` can say
exactly what to fix and exit 2 before starting anything.

Environment: ``RECALL_API_KEY``, ``RECALL_API_URL``, ``RECALL_REGION``,
``RECALL_WEBHOOK_SECRET`` and ``RECALL_DL_<SETTING>`` for every other setting. An unknown
``RECALL_DL_*`` variable is an error (a typo must not pass silently), except the
``RECALL_DL_BENCH_*`` variables the benchmark harness passes to its children.

Secrets: the API key and its file are *one* setting, and so are the webhook secret and its
file. The highest layer that gives either wins, whole::

    $CREDENTIALS_DIRECTORY/recall_api_key  <  TOML file  <  environment  <  flags
    (api_key / api_key_file)                  (RECALL_API_KEY / RECALL_DL_API_KEY_FILE)
                                                                 (--api-key-file)

so ``RECALL_API_KEY=x recall-dl fetch --api-key-file f`` reads ``f``, and a key file given in
the environment beats a key written in the TOML file. One layer giving both the value and the
file is an error. The systemd credential (``LoadCredential=recall_api_key:…``, likewise
``recall_webhook_secret``) is used only when no layer names the secret at all. A secret file
that cannot be read, and a key file that its group or others could read, are errors.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
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
MAX_PORT = 65535
API_PATH_PREFIX = "/api/v1"  # what Recall's docs put after the origin; the client adds it

REGIONS = ("us-east-1", "us-west-2", "eu-central-1", "ap-northeast-1")
ENV_PREFIX = "RECALL_DL_"
# RECALL_DL_* variables that are not settings: the benchmark harness (bench/) passes these to
# the processes it runs; they are read there, never here.
ENV_NOT_SETTINGS_PREFIXES = ("RECALL_DL_BENCH_",)
# Variables Recall users already know keep their Recall names.
ENV_ALIASES = {
    "api_key": "RECALL_API_KEY",
    "api_url": "RECALL_API_URL",
    "region": "RECALL_REGION",
    "webhook_secret": "RECALL_WEBHOOK_SECRET",
}
CREDENTIAL_FILES = {"api_key": "recall_api_key", "webhook_secret": "recall_webhook_secret"}
# A secret and the setting naming the file that holds it: resolved together (see above).
SECRET_FILES = {"api_key": "api_key_file", "webhook_secret": "webhook_secret_file"}
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
    per_recording_concurrency: int = 8
    api_concurrency: int = 4
    poll_concurrency: int = 2
    list_rate_limit: int = 60
    retrieve_rate_limit: int = 300
    rate_window_seconds: float = 60.0
    # Timeouts and transfer shape
    api_timeout_seconds: float = 30.0
    connect_timeout_seconds: float = 30.0
    read_timeout_seconds: float = 60.0
    chunk_bytes: int = 256 * 1024  # = the transfer engine's default: 8 transfers within 64 MiB RSS
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
    value = float(raw)  # type: ignore[arg-type]
    if not math.isfinite(value):  # "nan" and "inf" parse, but no setting means either
        raise ValueError("expected a finite number")
    return value


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


def _secret_problem(value: str) -> str | None:
    """Why a (stripped) secret cannot be sent in an HTTP header, or None."""
    if not value:
        return "must not be empty"
    if any(ch.isspace() or not ch.isprintable() for ch in value):
        # (a key pasted with a line break would otherwise fail every request, later)
        return "must not contain spaces, line breaks or control characters"
    return None


def _parse_secret(raw: object) -> Secret:
    value = _parse_str(raw).strip()
    problem = _secret_problem(value)
    if problem is not None:
        raise ValueError(problem)
    return Secret(value)


def _parse_api_url(raw: object) -> str:
    """The API's origin. Recall's docs write endpoints as ``https://<region>.recall.ai/api/v1/
    …``; an URL given with that prefix means the same origin (the prefix is ours to add)."""
    value = _parse_str(raw).strip().rstrip("/")
    if value.endswith(API_PATH_PREFIX):
        value = value[: -len(API_PATH_PREFIX)]
    return value


_PARSERS: dict[type, Callable[[object], Any]] = {
    int: _parse_int,
    float: _parse_float,
    bool: _parse_bool,
    str: _parse_str,
}
_SPECIAL: dict[str, Callable[[object], Any]] = {
    "api_key": _parse_secret,
    "webhook_secret": _parse_secret,
    "api_url": _parse_api_url,
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


def _read_private_text(path: Path, what: str, *, private: bool) -> str:
    """The stripped text of a secret file; every failure is a :class:`ConfigError`."""
    try:
        info = path.stat()
        if private and info.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise ConfigError(f"{what} is readable by group or others; run: chmod 600 {path}")
        return path.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        raise ConfigError(f"{what} does not exist") from None
    except PermissionError:
        raise ConfigError(f"{what} is not readable (permission denied)") from None
    except IsADirectoryError:
        raise ConfigError(f"{what} is a directory, not a file") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{what} is not UTF-8 text") from None
    except OSError as exc:
        raise ConfigError(f"{what} cannot be read: {exc.strerror or type(exc).__name__}") from None


def read_secret_file(path: Path, setting: str, source: str | None = None) -> Secret:
    """Read a secret from a file that only its owner can read (like ssh does with keys)."""
    what = f"{setting} {path}" + (f" (from {source})" if source else "")
    value = _read_private_text(path, what, private=True)
    if not value:
        raise ConfigError(f"{what} is empty")
    problem = _secret_problem(value)
    if problem is not None:
        raise ConfigError(f"{what}: the secret {problem}")
    return Secret(value)


def _credential(name: str, env: Mapping[str, str]) -> Secret | None:
    """systemd LoadCredential= puts secrets in $CREDENTIALS_DIRECTORY, readable only by us."""
    directory = env.get("CREDENTIALS_DIRECTORY")
    if not directory:
        return None
    path = Path(directory) / CREDENTIAL_FILES[name]
    what = f"systemd credential {path} ($CREDENTIALS_DIRECTORY/{CREDENTIAL_FILES[name]})"
    try:
        if not path.exists():
            return None
    except OSError as exc:
        raise ConfigError(f"{what} cannot be read: {exc.strerror or type(exc).__name__}") from None
    # systemd makes credentials owner-only itself; their mode is not ours to judge.
    value = _read_private_text(path, what, private=False)
    return Secret(value) if value else None


def _check_env_names(env: Mapping[str, str]) -> None:
    """Refuse ``RECALL_DL_*`` variables that name no setting, suggesting the closest one."""
    known = {env_name(name) for name in FIELD_NAMES}
    # RECALL_DL_API_KEY & co: the setting exists, under its Recall name.
    aliased = {ENV_PREFIX + name.upper(): variable for name, variable in ENV_ALIASES.items()}
    problems = []
    for variable in sorted(env):
        if (
            not variable.startswith(ENV_PREFIX)
            or variable in known
            or variable.startswith(ENV_NOT_SETTINGS_PREFIXES)
            or env[variable] == ""
        ):
            continue
        if variable in aliased:
            hint = f"; this setting is read from {aliased[variable]}"
        else:
            close = difflib.get_close_matches(variable, sorted(known), n=1, cutoff=0.6)
            hint = f"; did you mean {close[0]}?" if close else ""
        problems.append(f"{variable}{hint}")
    if problems:
        raise ConfigError(
            f"unknown setting(s) in the environment: {' / '.join(problems)} "
            "(see config/recall-dl.toml for every setting; variables are RECALL_DL_<SETTING>)"
        )


def _validate(settings: Settings, sources: Mapping[str, str]) -> None:
    def bad(name: str, why: str) -> ConfigError:
        return ConfigError(f"invalid {name} (from {sources.get(name, 'defaults')}): {why}")

    if settings.region not in REGIONS:
        raise bad("region", f"{settings.region!r} is not one of {', '.join(REGIONS)}")
    if settings.api_url:
        url = URL(settings.api_url)
        if url.scheme not in ("http", "https") or not url.host:
            raise bad("api_url", f"{settings.api_url!r} is not an http(s) URL")
        if url.path not in ("", "/") or url.query_string or url.fragment:
            raise bad(
                "api_url",
                f"{settings.api_url!r} has a path; give the origin only, e.g. "
                "https://us-east-1.recall.ai (recall-dl adds /api/v1/…)",
            )
    for name in (
        "concurrency",
        "per_host_concurrency",
        "per_recording_concurrency",
        "api_concurrency",
        "poll_concurrency",
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
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= MAX_PORT:
        raise bad("http_listen", "expected HOST:PORT with a port up to 65535, e.g. 127.0.0.1:8787")


def _resolve_secret(
    secret: str,
    env: Mapping[str, str],
    layers: list[tuple[dict[str, Any], dict[str, str]]],
    values: dict[str, Any],
    sources: dict[str, str],
) -> None:
    """Pick the secret or its file from the highest layer that names either (see above)."""
    file_setting = SECRET_FILES[secret]
    for layer_values, layer_sources in reversed(layers):
        given = [name for name in (secret, file_setting) if name in layer_values]
        if len(given) == 2:
            raise ConfigError(
                f"both {secret} (from {layer_sources[secret]}) and {file_setting} (from "
                f"{layer_sources[file_setting]}) are set; set only one of them"
            )
        if given == [secret]:
            values[secret] = layer_values[secret]
            sources[secret] = layer_sources[secret]
            return
        if given == [file_setting]:
            path = layer_values[file_setting]
            values[file_setting] = path
            sources[file_setting] = sources[secret] = layer_sources[file_setting]
            values[secret] = read_secret_file(path, file_setting, layer_sources[file_setting])
            return
    credential = _credential(secret, env)
    if credential is not None:
        values[secret] = credential
        sources[secret] = f"$CREDENTIALS_DIRECTORY/{CREDENTIAL_FILES[secret]}"


def load_settings(
    *,
    flags: Mapping[str, object] | None = None,
    config_path: Path | None = None,
    env: Mapping[str, str] | None = None,
) -> Settings:
    """Merge the layers, validate, and resolve secrets from files and credentials."""
    env = os.environ if env is None else env
    # Each layer, lowest first: its values and where each came from.
    layers: list[tuple[dict[str, Any], dict[str, str]]] = []

    path = config_path
    if path is None and DEFAULT_CONFIG_PATH.exists():
        path = DEFAULT_CONFIG_PATH
    if path is not None:
        source = f"config file {path}"
        layer = {name: _coerce(name, raw, source) for name, raw in _read_toml(path).items()}
        layers.append((layer, dict.fromkeys(layer, source)))

    _check_env_names(env)
    layer, layer_sources = {}, {}
    for name in FIELD_NAMES:
        variable = env_name(name)
        if variable in env and env[variable] != "":
            layer_sources[name] = f"environment {variable}"
            layer[name] = _coerce(name, env[variable], layer_sources[name])
    layers.append((layer, layer_sources))

    layer, layer_sources = {}, {}
    for name, raw in (flags or {}).items():
        if raw is None:
            continue
        if name not in FIELD_NAMES:
            raise ConfigError(f"unknown setting {name}")
        option = "--" + name.replace("_", "-")
        layer[name] = raw if not isinstance(raw, str) else _coerce(name, raw, f"option {option}")
        layer_sources[name] = f"option {option}"
    layers.append((layer, layer_sources))

    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    paired = set(SECRET_FILES) | set(SECRET_FILES.values())
    for layer, layer_sources in layers:
        for name, value in layer.items():
            if name not in paired:
                values[name] = value
                sources[name] = layer_sources[name]
    for secret in SECRET_FILES:
        _resolve_secret(secret, env, layers, values, sources)
    settings = Settings(**values)
    _validate(settings, sources)
    return settings


def settings_with(settings: Settings, **changes: Any) -> Settings:
    """A copy with some fields changed (validated again)."""
    updated = dataclasses.replace(settings, **changes)
    _validate(updated, dict.fromkeys(changes, "override"))
    return updated
