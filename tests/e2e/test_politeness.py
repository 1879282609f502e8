"""The API is used politely: fifty bots at the documented limits, zero 429s."""

from __future__ import annotations

import pytest

from downloader.simulator import SimulatorConfig
from tests.e2e.cli import Workspace


@pytest.mark.parametrize(
    "sim_config",
    [
        SimulatorConfig(
            bots=50,
            participants_per_bot=1,
            parts_per_participant=1,
            part_size=2048,
            time_scale=0,
            list_limit_per_min=60,
            retrieve_limit_per_min=300,
            seed=9,
        )
    ],
)
def test_fifty_bots_without_a_single_429(ws: Workspace) -> None:
    result = ws.run("fetch", *ws.sim.bot_ids, timeout=240)
    assert result.returncode == 0, result.stderr[-3000:]
    stats = ws.sim.stats()
    assert (
        stats["served_429"] == {"list": 0, "retrieve": 0} or sum(stats["served_429"].values()) == 0
    )
    assert stats["violations"]["over_limit"] == 0
    assert stats["violations"]["early_retry"] == 0
