"""Backfill downloads the soonest-expiring recordings first, end to end.

The simulator renders ``expires_at`` from each bot's ``recording_config.retention`` (done time
+ hours, recall-api.md §8). The bots below are created in one order and expire in another, so
the order in which the media host sees their parts tells whether backfill followed
``expires_at`` or merely the listing order.
"""

from __future__ import annotations

import pytest

from downloader.simulator import BotSpec, ParticipantSpec, SimulatorConfig
from downloader.simulator.config import Retention
from tests.backfill.helpers import downloaded
from tests.e2e.cli import Workspace

# Creation order; hours of retention (None: the workspace default, which keeps media forever).
RETENTIONS: list[Retention] = [30, None, 10, 50, "forever", 20, 40]

EXPIRY = SimulatorConfig(
    bots=0,
    participants_per_bot=1,
    parts_per_participant=1,
    part_size=2048,
    page_size=10,  # every recording on one page: one batch, queued at once
    time_scale=0,
    seed=26,
)


def media_order(ws: Workspace) -> list[str]:
    """Recording ids in the order their parts were first requested from the media host."""
    order: list[str] = []
    for entry in ws.sim.request_log():
        if entry["host"] != "media":
            continue
        # /<bucket>/_workspace-<ws>/recordings/<recording id>/video_separate/<vs>/<part>/video.mp4
        recording_id = entry["path"].split("/")[4]
        if not order or order[-1] != recording_id:
            order.append(recording_id)
    return order


@pytest.mark.parametrize("sim_config", [EXPIRY])
@pytest.mark.parametrize("metadata", [[], ["--metadata", "team=blue"]], ids=["list", "metadata"])
def test_backfill_downloads_soonest_expiring_recordings_first(
    ws: Workspace, metadata: list[str]
) -> None:
    bots = [
        ws.sim.add_bot(
            BotSpec(
                participants=[ParticipantSpec(id=100, name="Solo", parts=2)],
                retention=hours,
                metadata={"team": "blue"},
            )
        )
        for hours in RETENTIONS
    ]
    recording = {bot: ws.sim.recording_ids(bot)[0] for bot in bots}
    timed = sorted(
        (hours, bot)
        for bot, hours in zip(bots, RETENTIONS, strict=True)
        if hours not in (None, "forever")
    )
    forever = [
        bot for bot, hours in zip(bots, RETENTIONS, strict=True) if hours in (None, "forever")
    ]

    result = ws.run(
        "backfill", "--since", "2000-01-01", *metadata, "--concurrency", "1",
        RECALL_DL_API_CONCURRENCY="1",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"{len(bots)} recording(s): {len(bots)} done" in result.stdout
    assert downloaded(ws.out) == {(bot, recording[bot]) for bot in bots}

    order = media_order(ws)
    assert len(order) == len(bots), "one recording's parts were interleaved with another's"
    assert order[: len(timed)] == [recording[bot] for _, bot in timed]
    assert set(order[len(timed) :]) == {recording[bot] for bot in forever}  # never expire: last
