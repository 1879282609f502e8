"""The composition root in-process: a side task that dies stops the whole service."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs

from downloader.config import Settings, load_settings
from downloader.service.sdnotify import Notifier
from downloader.service.server import RELOADABLE, Service
from downloader.simulator import SimulatorThread

pytestmark = pytest.mark.anyio


def settings_for(sim: SimulatorThread, root: Path, **extra: str) -> Settings:
    env = {
        "RECALL_API_URL": sim.api_url,
        "RECALL_API_KEY": sim.api_key,
        "RECALL_DL_OUT": str(root / "out"),
        "RECALL_DL_HTTP_LISTEN": "127.0.0.1:0",
        "RECALL_DL_WEBHOOKS_ENABLED": "false",
        **extra,
    }
    return load_settings(env=env)


async def test_a_dying_side_task_stops_the_service(sim: SimulatorThread, tmp_path: Path) -> None:
    async def broken_discover(
        ctx: Any, *, since: dt.datetime, until: Any, cursor_name: Any = None
    ) -> Any:
        raise RuntimeError("bug in the sweep")

    settings = settings_for(sim, tmp_path)
    service = Service(
        settings,
        state=str(tmp_path / "state.db"),
        reload_settings=lambda: settings,
        notifier=Notifier(None),
        discover=broken_discover,
    )
    with capture_logs() as logs, pytest.raises(BaseExceptionGroup) as caught:
        await service.run()
    assert caught.group_contains(RuntimeError, match="bug in the sweep")
    died = [e for e in logs if e["event"] == "service_task_died"]
    assert died and died[0]["task"] == "sweep" and died[0]["log_level"] == "critical"


def test_reloadable_settings_exist() -> None:
    assert set(Settings.__dataclass_fields__) >= RELOADABLE
