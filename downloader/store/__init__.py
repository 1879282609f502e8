"""Durable job store: pick a backend by URL.

``sqlite:///abs/path.db`` or a plain filesystem path: one host (several processes may share
the file). ``postgresql://…`` / ``postgres://…``: several hosts share one database.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

from downloader.errors import ConfigError
from downloader.store.protocol import (
    IllegalTransition,
    Job,
    JobStore,
    Json,
    Lease,
    LeaseLost,
    NewJob,
    OnConflict,
    StoreCorrupt,
    WorkerInfo,
)

__all__ = [
    "IllegalTransition",
    "Job",
    "JobStore",
    "Json",
    "Lease",
    "LeaseLost",
    "NewJob",
    "OnConflict",
    "StoreCorrupt",
    "WorkerInfo",
    "open_store",
    "sqlite_path",
]

_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")
POSTGRES_SCHEMES = frozenset({"postgresql", "postgres"})


async def open_store(url: str, *, clock: Callable[[], float] | None = None) -> JobStore:
    """Open (creating or migrating as needed) the job store named by ``url``.

    ``clock`` replaces the store's notion of "now" (epoch seconds). SQLite uses it for every
    time it writes; PostgreSQL normally uses the database clock and takes ``clock`` only so
    that tests can move time (never pass it in production with several hosts).
    Raises ConfigError for an unusable URL or location, StoreCorrupt for a damaged store.
    """
    match = _SCHEME.match(url)
    scheme = match.group(1).lower() if match else None
    if scheme in POSTGRES_SCHEMES:
        from downloader.store.postgres import PostgresStore

        return await PostgresStore.open(url, clock=clock)
    if scheme is None or scheme == "sqlite":
        from downloader.store import location
        from downloader.store.sqlite import SqliteStore

        return await SqliteStore.open(location.prepare(sqlite_path(url)), clock=clock)
    raise ConfigError(
        f"unknown job store scheme {scheme!r}: use sqlite:///abs/path.db, a file path, "
        "or postgresql://…"
    )


def sqlite_path(url: str) -> Path:
    """The file named by ``sqlite:///abs/path.db`` (also ``sqlite:////abs``) or a plain path."""
    if not url.strip():
        raise ConfigError("the job store URL is empty")
    if not url.lower().startswith("sqlite:"):
        return Path(url)
    rest = url[len("sqlite:") :]
    if not rest.startswith("///"):
        raise ConfigError(f"{url!r}: a SQLite URL names an absolute path: sqlite:///abs/path.db")
    path = "/" + rest.lstrip("/")
    if "?" in path or "#" in path:
        raise ConfigError(f"{url!r}: SQLite URLs take no query or fragment")
    return Path(path)
