"""Fixtures for the Recall client tests (``fake_api``/``fake_other``: see ``fakeapi.py``)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest
import stamina

from tests.recall.fakeapi import FakeHost, fake_host


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(autouse=True)
def _stamina_no_waits() -> Iterator[None]:
    """Keep the client's attempt bounds but skip stamina's backoff sleeps."""
    with stamina.set_testing(True, attempts=100, cap=True):
        yield


@pytest.fixture
async def fake_api() -> AsyncIterator[FakeHost]:
    async with fake_host() as host:
        yield host


@pytest.fixture
async def fake_other() -> AsyncIterator[FakeHost]:
    async with fake_host() as host:
        yield host
