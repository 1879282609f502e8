"""pytest fixtures for a throwaway PostgreSQL server (see :mod:`downloader.store.pgserver`).

Enable them in a conftest with ``from downloader.store.pytest_plugin import pg_server, pg_url``
(or ``pytest_plugins = ["downloader.store.pytest_plugin"]`` in the top-level conftest).
They never skip: without the server binaries they fail, saying what to install.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from downloader.store.pgserver import TempPostgres


@pytest.fixture(scope="session")
def pg_server() -> Iterator[TempPostgres]:
    """One server for the whole session, stopped and deleted at its end."""
    with TempPostgres() as server:
        yield server


@pytest.fixture
def pg_url(pg_server: TempPostgres) -> str:
    """A fresh, empty database on the session's server, as a postgresql:// URL."""
    return pg_server.create_database()
