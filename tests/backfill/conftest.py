"""Fixtures for backfill tests: a simulator in a thread, and a workspace wired to it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from downloader.simulator import SimulatorConfig, SimulatorThread
from tests.e2e.cli import Workspace


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def sim_config() -> SimulatorConfig:
    return SimulatorConfig(
        bots=25,
        participants_per_bot=2,
        parts_per_participant=1,
        part_size=2048,
        created_at_spread_days=10,
        page_size=10,
        time_scale=0,
        seed=21,
    )


@pytest.fixture
def sim(sim_config: SimulatorConfig) -> Iterator[SimulatorThread]:
    with SimulatorThread(sim_config) as running:
        yield running


@pytest.fixture
def ws(tmp_path: Path, sim: SimulatorThread) -> Workspace:
    return Workspace(root=tmp_path, sim=sim, extra_env={})  # type: ignore[arg-type]
