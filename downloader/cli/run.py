"""`recall-dl run`: the long-running download service (see docs/SERVICE.md).

Exit codes: 0 stopped by a signal after draining; 1 a task of the service died (systemd
restarts it) or the hard deadline passed; 2 configuration error; 3 authentication error.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import anyio
import structlog

from downloader.cli.common import add_common_options, settings_from_args, state_url
from downloader.config import FIELD_NAMES, Settings, load_settings

log = structlog.get_logger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--http-listen",
        dest="http_listen",
        help="HOST:PORT for /healthz, /readyz, /metrics and webhooks (default 127.0.0.1:8787)",
    )
    add_common_options(parser)


def _reloader(args: argparse.Namespace) -> tuple[dict[str, object], Path | None]:
    flags = {n: getattr(args, n) for n in FIELD_NAMES if getattr(args, n, None) is not None}
    return flags, getattr(args, "config", None)


def run(args: argparse.Namespace) -> int:
    from downloader.service.server import Service

    settings = settings_from_args(args)
    flags, config_path = _reloader(args)

    def reload_settings() -> Settings:
        return load_settings(flags=flags, config_path=config_path)

    service = Service(
        settings, state=state_url(settings, service=True), reload_settings=reload_settings
    )
    return anyio.run(service.run)
