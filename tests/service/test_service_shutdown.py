"""SIGTERM while parts download: drain, checkpoint, release; the next start resumes, never refetches."""

from __future__ import annotations

import signal
import subprocess
import time

import pytest

from downloader.simulator import SimulatorConfig, SimulatorThread
from tests.service.harness import COMMAND, ServiceRun, assert_bot_complete, iter_parts

PART = 768 * 1024
CHECKPOINT = 64 * 1024
CONCURRENCY = 2
SLOW = SimulatorConfig(
    bots=2,
    participants_per_bot=1,
    parts_per_participant=2,
    part_size=PART,
    seed=9,
    time_scale=0,
    throttle_bytes_per_sec=1_000_000,
)


def served(sim: SimulatorThread) -> int:
    return int(sim.stats()["media"]["bytes_served_total"])


def running_jobs(service: ServiceRun) -> int:
    return sum(n for (_, state), n in service.jobs().items() if state == "running")


@pytest.mark.slow
@pytest.mark.parametrize("sim_config", [SLOW])
def test_sigterm_drains_and_restart_resumes_from_checkpoints(
    service: ServiceRun, sim: SimulatorThread
) -> None:
    service.env_extra = {
        "RECALL_DL_CONCURRENCY": str(CONCURRENCY),
        "RECALL_DL_CHECKPOINT_BYTES": str(CHECKPOINT),
        "RECALL_DL_GRACE_PERIOD_SECONDS": "0.5",
        "RECALL_DL_HARD_DEADLINE_SECONDS": "10",
    }
    service.root.mkdir(parents=True)
    added = subprocess.run(
        [*COMMAND, "add", *sim.bot_ids],
        env=service.env(),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert added.returncode == 0, added.stderr
    parts = list(iter_parts(sim, sim.bot_ids))
    total = sum(len(sim.part_content(p["id"])) for _, _, p in parts)

    # 1st run: SIGTERM mid-transfer; the grace period (0.5 s) is too short to finish a part,
    # so the transfers are cancelled, write their checkpoint and give their leases back.
    service.start(WATCHDOG_USEC="200000")
    service.wait_ready()
    service.wait_until(lambda: served(sim) > total // 4, "a quarter of the bytes served")
    started = time.monotonic()
    service.proc.send_signal(signal.SIGTERM)  # type: ignore[union-attr]
    assert service.notify is not None
    service.notify.wait_key("STOPPING", "1")
    assert service.stop() == 0
    assert time.monotonic() - started < 10
    assert running_jobs(service) == 0  # every lease released, nothing left to expire
    events = [e["event"] for e in service.events()]
    assert "service_cancelling_jobs" in events
    first_run = served(sim)
    assert first_run < total

    # 2nd run: a second SIGTERM cuts a long grace period short.
    service.start(
        notify_name="notify2", WATCHDOG_USEC="200000", RECALL_DL_GRACE_PERIOD_SECONDS="60"
    )
    service.wait_ready()
    service.wait_until(lambda: served(sim) > first_run + PART // 2, "more bytes served")
    started = time.monotonic()
    service.proc.send_signal(signal.SIGTERM)  # type: ignore[union-attr]
    service.notify.wait_key("STOPPING", "1")
    service.proc.send_signal(signal.SIGTERM)  # type: ignore[union-attr]
    assert service.stop() == 0
    assert time.monotonic() - started < 10  # not the 60 s grace period
    assert running_jobs(service) == 0
    assert "service_stop_forced" in [e["event"] for e in service.events()]

    # 3rd run: finishes; what was checkpointed is not fetched again.
    service.start(notify_name="notify3")
    service.wait_ready()
    recordings = sum(len(sim.recording_ids(b)) for b in sim.bot_ids)
    service.wait_until(
        lambda: service.jobs().get(("finalize_recording", "done"), 0) == recordings,
        "every recording finalized",
    )
    for bot in sim.bot_ids:
        assert_bot_complete(service, bot)
    stats = sim.stats()["media"]
    assert stats["range_requests"] >= 1  # resumed, not restarted
    # Each interruption may lose at most the unflushed tail of the transfers in flight.
    assert stats["bytes_served_total"] - total <= 2 * CONCURRENCY * CHECKPOINT
    assert service.stop() == 0
