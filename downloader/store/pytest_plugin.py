"""pytest fixtures for a throwaway PostgreSQL server (see :mod:`downloader.store.pgserver`).

Enable them in a conftest with ``from downloader.store.pytest_plugin import pg_server, pg_url``
(or ``pytest_plugins = ["downloader.store.pytest_plugin"]`` in the top-level conftest).
They never skip: without the server binaries they fail, saying what to install.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from downloader.store.pgserver import TempPostgres

_shared: TempPostgres | None = None


@pytest.fixture(scope="session")
def pg_server() -> Iterator[TempPostgres]:
    """One server for the whole session, stopped and deleted at its end.

    Shared through a module global, because every conftest or module that imports this
    fixture gets its own session-scoped copy; each copy's teardown stops the same server.
    """
    global _shared  # noqa: PLW0603 -- one server per test process, by design
    if _shared is None:
        _shared = TempPostgres()
        _shared.start()
    yield _shared
    _shared.stop()


@pytest.fixture
def pg_url(pg_server: TempPostgres) -> str:
    """A fresh, empty database on the session's server, as a postgresql:// URL."""
    return pg_server.create_database()
