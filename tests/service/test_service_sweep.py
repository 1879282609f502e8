"""The sweep finds recordings no one announced: no webhook, no `recall-dl add`."""

from __future__ import annotations

import sqlite3

from downloader.simulator import BotSpec, ParticipantSpec, SimulatorThread
from tests.service.harness import ServiceRun, assert_bot_complete, sidecar_complete


def cursor(service: ServiceRun, name: str) -> str | None:
    with sqlite3.connect(service.state) as conn:
        row = conn.execute("SELECT value FROM cursors WHERE name = ?", (name,)).fetchone()
    return None if row is None else str(row[0])


def test_sweep_discovers_unannounced_recordings(service: ServiceRun, sim: SimulatorThread) -> None:
    service.start(RECALL_DL_SWEEP_ENABLED="true", RECALL_DL_SWEEP_INTERVAL_SECONDS="1")
    service.wait_ready()
    service.wait_until(
        lambda: all(sidecar_complete(service, b) for b in sim.bot_ids), "first sweep's recordings"
    )
    for bot in sim.bot_ids:
        assert_bot_complete(service, bot)
    first_since = cursor(service, "sweep_since")
    assert first_since is not None

    # A bot that finishes while the service runs, announced to no one: a later sweep finds it.
    late = sim.add_bot(BotSpec(participants=[ParticipantSpec(id=7, name="Late", parts=2)]))
    service.wait_until(lambda: sidecar_complete(service, late), "the late bot's recording")
    assert_bot_complete(service, late)
    assert cursor(service, "sweep_since") != first_since  # the window moved on

    metrics = service.metrics()
    assert metrics['recall_dl_sweeps_total{result="ok"}'] >= 2
    assert metrics["recall_dl_sweep_enqueued_jobs_total"] == len(sim.bot_ids) + 1
    # Sweeping the same window again queued nothing twice.
    assert service.jobs()[("fetch_manifest", "done")] == len(sim.bot_ids) + 1
    assert service.stop() == 0
    # A clean stop hands the sweep to whoever starts next.
    lease = cursor(service, "sweep_lease")
    assert lease is not None and lease.endswith(" 0")
