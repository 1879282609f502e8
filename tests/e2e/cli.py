"""Run the real `recall-dl` command as a user would: a subprocess with an environment."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from downloader.simulator import Simulator

COMMAND = [sys.executable, "-m", "downloader.cli"]


@dataclass
class Workspace:
    """An output folder and a state file for one test, wired to one simulator."""

    root: Path
    sim: Simulator
    extra_env: dict[str, str]

    @property
    def out(self) -> Path:
        return self.root / "out"

    @property
    def state(self) -> Path:
        return self.root / "state.db"

    def env(self, **overrides: str) -> dict[str, str]:
        env = {
            k: v for k, v in os.environ.items() if not k.startswith(("RECALL_", "NOTIFY_SOCKET"))
        }
        env.update(
            {
                "RECALL_API_URL": self.sim.api_url,
                "RECALL_API_KEY": self.sim.api_key,
                "RECALL_DL_OUT": str(self.out),
                "RECALL_DL_STATE": str(self.state),
                "RECALL_DL_LOG_FORMAT": "json",
                # Short schedules so bots "in the call" finish within a test.
                "RECALL_DL_POLL_INITIAL_SECONDS": "0.2",
                "RECALL_DL_POLL_MAX_SECONDS": "0.5",
            }
        )
        env.update(self.extra_env)
        env.update(overrides)
        return env

    def run(self, *args: str, timeout: float = 90, **env: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*COMMAND, *args],
            env=self.env(**env),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def popen(self, *args: str, **env: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [*COMMAND, *args],
            env=self.env(**env),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def sidecar(self, bot_id: str, recording_id: str) -> dict[str, Any]:
        path = self.out / bot_id / recording_id / "manifest.json"
        data: dict[str, Any] = json.loads(path.read_text())
        return data


def files_under(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file())
