from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from downloader.simulator import SimulatorConfig, SimulatorThread
from tests.service.harness import ServiceRun


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def sim_config() -> SimulatorConfig:
    return SimulatorConfig(
        bots=2,
        participants_per_bot=2,
        parts_per_participant=2,
        part_size=96 * 1024,
        seed=5,
        time_scale=0,
    )


@pytest.fixture
def sim(sim_config: SimulatorConfig) -> Iterator[SimulatorThread]:
    with SimulatorThread(sim_config) as running:
        yield running


@pytest.fixture
def service(tmp_path: Path, sim: SimulatorThread) -> Iterator[ServiceRun]:
    run = ServiceRun(root=tmp_path / "svc", sim=sim)
    try:
        yield run
    finally:
        run.kill()
