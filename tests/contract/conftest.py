"""Every JobStore backend behind one fixture: each contract test runs once per backend."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from downloader.store import JobStore, open_store
from downloader.store.pytest_plugin import pg_server, pg_url
from downloader.store.testing import FakeClock

__all__ = ["pg_server", "pg_url"]  # fixtures, re-exported for pytest

BACKENDS = ["sqlite"]  # postgres joins with downloader.store.postgres


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    name: str = request.param
    return name


@pytest.fixture
def store_url(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> str:
    if backend == "sqlite":
        return f"sqlite:///{tmp_path}/state/jobs.db"
    url: str = request.getfixturevalue("pg_url")
    return url


@pytest.fixture
async def store(store_url: str, clock: FakeClock) -> AsyncIterator[JobStore]:
    opened = await open_store(store_url, clock=clock)
    try:
        yield opened
    finally:
        await opened.close()
