"""SIGHUP: a valid file is applied where it is safe; an invalid one changes nothing."""

from __future__ import annotations

import signal
from pathlib import Path

from tests.service.harness import ServiceRun

BASE = 'concurrency = 2\nlog_level = "info"\nsweep_enabled = false\nwebhooks_enabled = false\n'


def hup(service: ServiceRun) -> dict[str, str]:
    """Send SIGHUP; returns the READY=1 that ends the reload (after RELOADING=1)."""
    assert service.notify is not None and service.proc is not None
    service.notify.messages.clear()
    service.proc.send_signal(signal.SIGHUP)
    service.notify.wait_key("RELOADING", "1")
    return service.notify.wait_key("READY", "1")


def test_sighup_applies_a_valid_config_and_keeps_the_old_on_error(
    service: ServiceRun, tmp_path: Path
) -> None:
    config = tmp_path / "recall-dl.toml"
    config.write_text(BASE)
    service.args = ("--config", str(config))
    service.start()
    service.wait_ready()
    assert service.metrics()['recall_dl_workers{pool="transfer"}'] == 2

    config.write_text(
        BASE.replace("concurrency = 2", "concurrency = 5").replace('"info"', '"debug"')
        + "lease_seconds = 45.0\n"
    )
    ready = hup(service)
    assert ready["STATUS"] == "reloaded: applied concurrency, log_level"
    metrics = service.metrics()
    assert metrics['recall_dl_workers{pool="transfer"}'] == 5
    assert metrics['recall_dl_config_reloads_total{result="applied"}'] == 1
    events = {e["event"]: e for e in service.events()}
    assert events["config_reloaded"]["applied"] == ["concurrency", "log_level"]
    assert events["config_reload_needs_restart"]["settings"] == ["lease_seconds"]
    assert events["config_reload_needs_restart"]["level"] == "warning"
    # The media connection pool was sized for 2 at start: said so, not silently capped.
    assert events["concurrency_above_connection_pool"]["connections"] == 2

    for broken in ("concurency = 3\n", "concurrency = 0\n", "concurrency = [\n"):
        config.write_text(broken)
        ready = hup(service)
        assert ready["STATUS"].startswith("reload rejected, old settings kept")
    rejected = [e for e in service.events() if e["event"] == "config_reload_rejected"]
    assert [("concurency" in r["error"], "at least 1" in r["error"]) for r in rejected[:2]] == [
        (True, False),
        (False, True),
    ]
    assert service.http("GET", "/healthz")[0] == 200
    metrics = service.metrics()
    assert metrics['recall_dl_workers{pool="transfer"}'] == 5
    assert metrics['recall_dl_config_reloads_total{result="rejected"}'] == 3
    assert service.stop() == 0
