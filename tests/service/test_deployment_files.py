"""The shipped unit passes systemd's own checks; the example config documents every key."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from downloader.config import FIELD_NAMES, Settings, load_settings

ROOT = Path(__file__).resolve().parents[2]
UNIT = ROOT / "systemd" / "recall-dl.service"
EXAMPLE = ROOT / "config" / "recall-dl.toml"
MAX_EXPOSURE = 2.0
needs_systemd = pytest.mark.skipif(
    shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed"
)


@pytest.fixture
def unit_copy() -> Path:
    """The unit exactly as shipped (verify checks that ExecStart's program exists)."""
    return UNIT


@needs_systemd
def test_unit_verifies(unit_copy: Path) -> None:
    result = subprocess.run(
        ["systemd-analyze", "verify", str(unit_copy)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "recall-dl.service" not in result.stderr, result.stderr


@needs_systemd
def test_unit_exposure_is_at_most_two(unit_copy: Path) -> None:
    result = subprocess.run(
        ["systemd-analyze", "security", "--offline=true", str(unit_copy)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    match = re.search(r"Overall exposure level for recall-dl\.service: (\d+\.\d+)", result.stdout)
    assert match, result.stdout + result.stderr
    assert float(match.group(1)) <= MAX_EXPOSURE


def test_unit_stop_timeout_covers_grace_and_hard_deadline() -> None:
    text = UNIT.read_text()
    stop = int(re.search(r"^TimeoutStopSec=(\d+)$", text, re.M).group(1))  # type: ignore[union-attr]
    defaults = Settings()
    assert stop > defaults.grace_period_seconds + defaults.hard_deadline_seconds
    for needed in ("Type=notify", "WatchdogSec=", "StateDirectory=recall-dl", "ExecReload="):
        assert needed in text
    assert "LoadCredential=recall_api_key:" in text
    assert "LoadCredential=recall_webhook_secret:" in text


def test_example_config_documents_every_key_with_a_valid_default(tmp_path: Path) -> None:
    text = EXAMPLE.read_text()
    lines = re.findall(r"^# (\w+ = .*)$", text, re.M)
    keys = [line.split(" = ")[0] for line in lines]
    assert sorted(keys) == sorted(FIELD_NAMES)
    # Uncommented, the documented defaults (minus secrets and their files) are the defaults.
    skip = {"api_key", "webhook_secret", "api_key_file", "webhook_secret_file"}
    uncommented = tmp_path / "all.toml"
    uncommented.write_text("\n".join(line for line in lines if line.split(" = ")[0] not in skip))
    loaded = load_settings(config_path=uncommented, env={})
    assert loaded == Settings()
