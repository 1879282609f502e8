from __future__ import annotations

import pytest

from downloader.store.testing import FakeClock


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"  # aiohttp and asyncpg are asyncio-only


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()
