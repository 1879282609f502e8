"""`recall-dl run` as systemd runs it: notify protocol, health, work from `recall-dl add`, metrics."""

from __future__ import annotations

import signal
import subprocess

from downloader.simulator import SimulatorThread
from tests.service.harness import COMMAND, ServiceRun, assert_bot_complete, iter_parts


def test_notify_health_add_metrics_and_clean_stop(
    service: ServiceRun, sim: SimulatorThread
) -> None:
    service.start(WATCHDOG_USEC="300000")
    ready = service.wait_ready()
    assert ready["STATUS"].startswith("queue: 0 pending")
    assert int(ready["MAINPID"]) == service.proc.pid  # type: ignore[union-attr]
    assert service.notify is not None
    service.notify.wait_key("WATCHDOG", "1")
    assert service.http("GET", "/healthz")[0] == 200
    assert service.http("GET", "/readyz")[0] == 200
    before = service.metrics()
    assert before["recall_dl_downloaded_bytes_total"] == 0

    # The store is the queue: another process adds bots while the service runs.
    added = subprocess.run(
        [*COMMAND, "add", *sim.bot_ids, "--state", str(service.state)],
        env=service.env(),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert added.returncode == 0, added.stderr
    recordings = sum(len(sim.recording_ids(b)) for b in sim.bot_ids)
    service.wait_until(
        lambda: service.jobs().get(("finalize_recording", "done"), 0) == recordings,
        "every recording finalized",
    )
    parts = sum(assert_bot_complete(service, b) for b in sim.bot_ids)
    total = sum(len(sim.part_content(p["id"])) for _, _, p in iter_parts(sim, sim.bot_ids))

    after = service.metrics()
    assert after["recall_dl_downloaded_bytes_total"] == total
    assert after['recall_dl_parts_total{outcome="done",reason=""}'] == parts
    assert after['recall_dl_api_requests_total{endpoint="retrieve"}'] > 0
    assert after['recall_dl_api_requests_total{endpoint="list"}'] > 0
    assert 'recall_dl_api_rate_limited_total{endpoint="list"}' in after
    assert "recall_dl_lease_reclaims_total" in after
    done = sum(service.jobs().values())  # every job of every kind, all done
    status = f"0 pending, 0 running, {done} done, 0 failed; parts: 0 waiting, 0 downloading"
    service.notify.wait_for(lambda m: m.get("STATUS", "").endswith(status), "STATUS: all done")
    # The gauges follow the store (refreshed with each STATUS).
    assert service.metrics()['recall_dl_jobs{kind="download_part",state="done"}'] == parts

    service.proc.send_signal(signal.SIGTERM)  # type: ignore[union-attr]
    stopping = service.notify.wait_key("STOPPING", "1")
    assert "draining" in stopping["STATUS"]
    assert service.stop() == 0
    events = [e["event"] for e in service.events()]
    assert events.index("service_ready") < events.index("service_draining")
    assert events[-1] == "service_stopped"


def test_without_a_webhook_secret_the_service_runs_with_the_receiver_off(
    service: ServiceRun,
) -> None:
    service.start(RECALL_DL_WEBHOOKS_ENABLED="true")
    service.wait_ready()
    assert "no webhook secret is configured" in service.log_path.read_text()
    status, _ = service.http("POST", "/webhooks/recall", b'{"event": "bot.done"}')
    assert status == 404  # nothing unsigned is ever accepted
    assert service.stop() == 0
