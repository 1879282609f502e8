"""Options every subcommand shares, exit codes, and turning flags into Settings."""

from __future__ import annotations

import argparse
import hashlib
import os
import re
from pathlib import Path

import platformdirs

from downloader.config import FIELD_NAMES, Settings, load_settings
from downloader.errors import ConfigError
from downloader.logs import configure_logging
from downloader.naming import slugify
from downloader.store import POSTGRES_SCHEMES, sqlite_path

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_AUTH = 3
EXIT_INTERRUPTED = 130

SERVICE_STATE = Path("/var/lib/recall-dl/state.db")
_STORE_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")


def add_common_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("common options")
    group.add_argument(
        "--config",
        type=Path,
        help="TOML settings file (default /etc/recall-dl/recall-dl.toml if present)",
    )
    group.add_argument(
        "--state",
        help="job store: a SQLite file path, sqlite:///PATH or postgresql://… (RECALL_DL_STATE)",
    )
    group.add_argument("--out", help="output folder (RECALL_DL_OUT, default ./recordings)")
    group.add_argument(
        "--api-key-file", dest="api_key_file", help="file holding the Recall API key (mode 600)"
    )
    group.add_argument("--api-url", dest="api_url", help="Recall API base URL (RECALL_API_URL)")
    group.add_argument(
        "--region", help="Recall region: us-east-1, us-west-2, eu-central-1, ap-northeast-1"
    )
    group.add_argument(
        "--concurrency", help="simultaneous part transfers (RECALL_DL_CONCURRENCY, default 8)"
    )
    group.add_argument("--log-level", dest="log_level", help="debug, info, warning or error")
    group.add_argument("--log-format", dest="log_format", help="auto, json or console")


def settings_from_args(args: argparse.Namespace) -> Settings:
    flags = {
        name: getattr(args, name) for name in FIELD_NAMES if getattr(args, name, None) is not None
    }
    settings = load_settings(flags=flags, config_path=getattr(args, "config", None))
    secrets = [s.reveal() for s in (settings.api_key, settings.webhook_secret) if s is not None]
    configure_logging(settings.log_level, settings.log_format, secrets=secrets)
    return settings


def default_cli_state(out: Path) -> str:
    """One job store per output folder, under the user's data directory.

    Jobs say what is done, not where it went: with one store for every folder, a bot fetched
    into ``a/`` would count as done for ``b/``, and two commands writing to different
    folders would run each other's jobs.
    """
    root = out.expanduser().resolve()
    digest = hashlib.sha256(str(root).encode()).hexdigest()[:12]
    name = slugify(root.name or "root", limit=40)
    return str(platformdirs.user_data_path("recall-dl") / "states" / f"{name}-{digest}.db")


def default_service_state() -> str:
    # systemd's StateDirectory= exports $STATE_DIRECTORY.
    directory = os.environ.get("STATE_DIRECTORY")
    return str(Path(directory) / "state.db") if directory else str(SERVICE_STATE)


def state_url(settings: Settings, *, service: bool = False) -> str:
    if settings.state:
        return settings.state
    return default_service_state() if service else default_cli_state(settings.out)


def existing_state(settings: Settings) -> str:
    """The job store of a command that only reads or re-queues (status, retry, verify --repair).

    A SQLite file that does not exist is refused, not created: a mistyped ``--state`` (or an
    ``--out`` whose default store was never used) must not print an empty report, claim that
    nothing failed, or leave folders and a fresh database behind. Raises ConfigError (exit 2).
    Commands that do work (fetch, add, run, backfill) create the store as before.
    """
    url = state_url(settings)
    scheme = _STORE_SCHEME.match(url)
    if scheme is not None and scheme.group(1).lower() in POSTGRES_SCHEMES:
        return url
    path = sqlite_path(url).expanduser()
    if not path.exists():
        where = (
            "--state / RECALL_DL_STATE"
            if settings.state
            else f"--out {settings.out} (it picks the default store) or pass --state"
        )
        raise ConfigError(
            f"no job store at {path}: nothing was fetched with this state yet; check {where}"
        )
    return url
