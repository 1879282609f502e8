"""`recall-dl fetch` end to end: the real command against the simulator over real sockets."""

from __future__ import annotations

import hashlib
import sqlite3
from pathlib import Path

import pytest

from downloader.simulator import BotSpec, FaultConfig, ParticipantSpec, SimulatorConfig
from tests.e2e.cli import Workspace, files_under


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def assert_bot_complete(ws: Workspace, bot_id: str) -> int:
    """Every part of every recording is on disk, byte-identical, and listed in the sidecar."""
    checked = 0
    for recording_id in ws.sim.recording_ids(bot_id):
        sidecar = ws.sidecar(bot_id, recording_id)
        expected = {p["id"] for p in ws.sim.parts(recording_id)}
        assert {p["id"] for p in sidecar["parts"]} == expected
        assert sidecar["bot_id"] == bot_id
        assert sidecar["recording_id"] == recording_id
        for entry in sidecar["parts"]:
            path = ws.out / bot_id / recording_id / entry["path"]
            assert path.is_file(), path
            assert sha256(path) == entry["sha256"] == ws.sim.part_sha256(entry["id"])
            assert path.stat().st_size == entry["bytes"]
            checked += 1
    return checked


def test_fetch_done_bots(ws: Workspace) -> None:
    result = ws.run("fetch", *ws.sim.bot_ids)
    assert result.returncode == 0, result.stderr
    parts = sum(assert_bot_complete(ws, b) for b in ws.sim.bot_ids)
    assert (
        parts == 2 * 2 * (2 + 0) + 2
    )  # 2 bots x 2 participants x 2 webcam parts + a screenshare each
    assert not [p for p in files_under(ws.out) if p.name.endswith(".part")]
    for bot_id in ws.sim.bot_ids:
        assert bot_id in result.stdout
    # Nothing violated the API's rules.
    violations = ws.sim.stats()["violations"]
    assert violations["auth_to_media"] == 0
    assert violations["body_on_get"] == 0
    assert violations["missing_slash"] == 0
    assert violations["over_limit"] == 0


def test_second_run_downloads_nothing_again(ws: Workspace) -> None:
    assert ws.run("fetch", *ws.sim.bot_ids).returncode == 0
    served = ws.sim.stats()["media"]["bytes_served_total"]
    again = ws.run("fetch", *ws.sim.bot_ids)
    assert again.returncode == 0, again.stderr
    assert ws.sim.stats()["media"]["bytes_served_total"] == served


@pytest.mark.parametrize(
    "sim_config",
    [
        SimulatorConfig(
            bots=1,
            participants_per_bot=2,
            parts_per_participant=1,
            part_size=64 * 1024,
            time_scale=1.0,
            bot_lifecycle=(0.2, 1.0, 0.2, 0.3),
        )
    ],
)
def test_fetch_waits_for_a_bot_still_in_the_call(ws: Workspace) -> None:
    bot_id = ws.sim.bot_ids[0]
    result = ws.run("fetch", bot_id)
    assert result.returncode == 0, result.stderr
    assert assert_bot_complete(ws, bot_id) == 3


@pytest.mark.parametrize(
    "sim_config",
    [
        SimulatorConfig(
            bots=3,
            participants_per_bot=2,
            parts_per_participant=2,
            part_size=200 * 1024,
            time_scale=0,
            seed=5,
            faults=FaultConfig(
                api_5xx=3,
                api_429=2,
                manifest_5xx=2,
                media_5xx=2,
                truncate=3,
                stall=1,
                ignore_range=2,
                expire=2,
                etag_change=1,
                redirect=1,
                stall_seconds=3.0,
            ),
        )
    ],
)
def test_every_fault_at_once(ws: Workspace) -> None:
    result = ws.run(
        "fetch",
        *ws.sim.bot_ids,
        RECALL_DL_READ_TIMEOUT_SECONDS="1",
        RECALL_DL_CHECKPOINT_BYTES="64K",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    for bot_id in ws.sim.bot_ids:
        assert_bot_complete(ws, bot_id)
    stats = ws.sim.stats()
    assert stats["violations"]["redirect_followed"] == 0
    assert stats["violations"]["early_retry"] == 0
    assert sum(stats["faults_injected"].values()) >= 10


HOSTILE = ["../../x", "a/b", "", None, "nul\x00byte", "x" * 300, "😀 李小龍", "Dup", "Dup"]


def test_hostile_participant_names(ws: Workspace) -> None:
    participants = [ParticipantSpec(id=i + 1, name=name, parts=1) for i, name in enumerate(HOSTILE)]
    # A participant who left and rejoined: the same id appears with two more parts.
    participants.append(ParticipantSpec(id=1, name="../../x", parts=2))
    bot_id = ws.sim.add_bot(BotSpec(participants=participants))
    result = ws.run("fetch", bot_id)
    assert result.returncode == 0, result.stderr
    assert assert_bot_complete(ws, bot_id) == len(HOSTILE) + 2
    root = ws.out.resolve()
    for path in files_under(ws.root):
        assert path.resolve().is_relative_to(ws.root.resolve())
    folders = {p.parent.name for p in files_under(root) if p.suffix == ".mp4"}
    assert len(folders) == len(HOSTILE)  # the rejoin shares its folder; the two "Dup"s do not
    for folder in folders:
        assert "/" not in folder and "\x00" not in folder and not folder.startswith(".")
        assert len(folder.encode()) < 120


def test_failures_next_to_good_bots(ws: Workspace) -> None:
    fatal = ws.sim.add_bot(
        BotSpec(participants=[ParticipantSpec(id=1)], outcome="fatal", sub_code="meeting_not_found")
    )
    vs_failed = ws.sim.add_bot(
        BotSpec(participants=[ParticipantSpec(id=1)], outcome="video_separate_failed")
    )
    missing = "00000000-0000-4000-8000-000000000000"
    good = ws.sim.bot_ids
    result = ws.run("fetch", *good, fatal, vs_failed, missing)
    assert result.returncode == 1, result.stderr
    for bot_id in good:
        assert_bot_complete(ws, bot_id)
    lines = {line.split(":")[0]: line for line in result.stdout.splitlines() if ":" in line}
    assert "FAILED" in lines[fatal] and "meeting_not_found" in lines[fatal]
    assert "FAILED" in lines[vs_failed] and "failed" in lines[vs_failed]
    assert "FAILED" in lines[missing] and "not found" in lines[missing]
    for bot_id in good:
        assert "done" in lines[bot_id]


def test_a_bot_whose_media_expired_fails_with_the_reason(ws: Workspace) -> None:
    """recall-api.md §8: when the retention ends the media is deleted and the bot turns
    ``media_expired``: nothing to download, and the user is told why."""
    expired = ws.sim.add_bot(BotSpec(participants=[ParticipantSpec(id=1)], retention=1))
    ws.sim.advance_time(2 * 3600)
    result = ws.run("fetch", expired)
    assert result.returncode == 1, result.stderr[-2000:]
    (line,) = [line for line in result.stdout.splitlines() if line.startswith(expired)]
    assert "FAILED" in line and "media_expired" in line
    assert not (ws.out / expired).exists() or not any((ws.out / expired).rglob("*.mp4"))


@pytest.mark.parametrize("sim_config", [SimulatorConfig(bots=1, time_scale=0, part_size=4096)])
def test_bot_without_video_separate_says_how_to_enable_it(ws: Workspace) -> None:
    bot_id = ws.sim.add_bot(
        BotSpec(participants=[ParticipantSpec(id=1)], outcome="no_video_separate")
    )
    result = ws.run("fetch", bot_id, RECALL_DL_VIDEO_SEPARATE_GRACE_SECONDS="0.5")
    assert result.returncode == 1
    assert "video_separate_mp4" in result.stdout
    assert "gallery_view_v2" in result.stdout


def test_bad_input_is_one_clear_line(ws: Workspace, tmp_path: Path) -> None:
    not_uuid = ws.run("fetch", "not-a-bot")
    assert not_uuid.returncode == 2
    assert "not a bot id" in not_uuid.stderr
    assert not ws.state.exists()

    blocked = tmp_path / "file-not-dir"
    blocked.write_text("x")
    unwritable = ws.run("fetch", ws.sim.bot_ids[0], "--out", str(blocked / "sub"))
    assert unwritable.returncode == 2
    assert "output folder" in unwritable.stderr

    corrupt = tmp_path / "corrupt.db"
    corrupt.write_bytes(b"this is not a database" * 100)
    bad_state = ws.run("fetch", ws.sim.bot_ids[0], "--state", str(corrupt))
    assert bad_state.returncode == 2
    assert "corrupt.db" in bad_state.stderr
    assert corrupt.read_bytes() == b"this is not a database" * 100

    no_key = ws.run("fetch", ws.sim.bot_ids[0], RECALL_API_KEY="")
    assert no_key.returncode == 2
    assert "RECALL_API_KEY" in no_key.stderr

    wrong_key = ws.run("fetch", ws.sim.bot_ids[0], RECALL_API_KEY="wrong-key")
    assert wrong_key.returncode == 3
    assert "401" in wrong_key.stderr and "region" in wrong_key.stderr
    assert "wrong-key" not in wrong_key.stderr + wrong_key.stdout


def test_state_file_passes_integrity_check(ws: Workspace) -> None:
    assert ws.run("fetch", *ws.sim.bot_ids).returncode == 0
    with sqlite3.connect(ws.state) as db:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
