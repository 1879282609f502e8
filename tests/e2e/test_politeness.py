"""The API is used politely: fifty bots at the documented limits, zero 429s."""

from __future__ import annotations

from typing import Any

import pytest

from downloader.simulator import FaultConfig, SimulatorConfig
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


# A short simulated minute (6 s) so that the test is quick; both sides use the same window.
TIGHT = SimulatorConfig(
    bots=6,
    participants_per_bot=1,
    parts_per_participant=1,
    part_size=2048,
    time_scale=0,
    retrieve_limit_per_min=5,
    list_limit_per_min=5,
    rate_window_seconds=6.0,
    seed=10,
)


@pytest.mark.parametrize("sim_config", [TIGHT])
def test_commands_run_back_to_back_share_one_budget(ws: Workspace) -> None:
    """Recall counts a workspace's requests over the last minute whichever process sent
    them: a run started right after another must not begin with a fresh allowance."""
    limits: dict[str, Any] = {
        "RECALL_DL_RETRIEVE_RATE_LIMIT": "5",
        "RECALL_DL_LIST_RATE_LIMIT": "5",
        "RECALL_DL_RATE_WINDOW_SECONDS": "6",
    }
    bots = ws.sim.bot_ids
    for run in range(2):  # each run retrieves 3 bots, their recordings and video_separates
        result = ws.run("fetch", *bots[3 * run : 3 * run + 3], **limits)
        assert result.returncode == 0, result.stderr[-3000:]
    stats = ws.sim.stats()
    assert sum(stats["served_429"].values()) == 0, stats["served_429"]
    assert stats["violations"]["over_limit"] == 0


@pytest.mark.parametrize(
    "sim_config",
    [
        SimulatorConfig(
            bots=1,
            participants_per_bot=1,
            parts_per_participant=1,
            part_size=2048,
            time_scale=0,
            seed=12,
            faults=FaultConfig(api_429=1, retry_after_seconds=4),
        )
    ],
)
def test_an_api_job_waiting_out_a_429_keeps_its_lease(ws: Workspace) -> None:
    """The pause (4 s) outlasts the lease (1.5 s): without renewal the job would be taken
    back and counted as a failed attempt while it politely waits."""
    result = ws.run("fetch", *ws.sim.bot_ids, RECALL_DL_LEASE_SECONDS="1.5")
    assert result.returncode == 0, result.stderr[-3000:]
    assert ws.sim.stats()["faults_injected"]["api_429"] == 1
    assert "leases_reclaimed" not in result.stderr
    assert "job_abandoned_lease_lost" not in result.stderr
