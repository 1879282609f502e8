"""status, retry and verify read an existing job store; demo takes --state like the rest."""

from __future__ import annotations

import json
import sqlite3
import subprocess
from pathlib import Path

import pytest

from downloader.simulator import BotSpec, ParticipantSpec
from tests.e2e.cli import Workspace

READ_ONLY = [
    ["status"],
    ["status", "--json"],
    ["retry", "--failed"],
    ["retry", "poll_bot:00000000-0000-4000-8000-000000000000"],
    ["verify"],
    ["verify", "--repair"],
]


def one_line(stderr: str) -> str:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    return lines[0]


def assert_refused(result: subprocess.CompletedProcess[str], missing: Path) -> None:
    assert result.returncode == 2, result.stdout + result.stderr
    line = one_line(result.stderr)
    assert f"no job store at {missing}" in line
    assert "--state" in line
    assert result.stdout == ""


@pytest.mark.parametrize("command", READ_ONLY, ids=" ".join)
def test_read_only_commands_refuse_a_missing_state_and_create_nothing(
    ws: Workspace, tmp_path: Path, command: list[str]
) -> None:
    ws.out.mkdir()  # verify needs an output folder to look at
    missing = tmp_path / "nonexistent" / "dir" / "x.db"
    assert_refused(ws.run(*command, "--state", str(missing)), missing)
    assert not (tmp_path / "nonexistent").exists()


def test_a_missing_state_is_refused_in_every_spelling(ws: Workspace, tmp_path: Path) -> None:
    missing = tmp_path / "nonexistent" / "x.db"
    assert_refused(ws.run("status", "--state", f"sqlite:///{missing}"), missing)
    assert_refused(ws.run("status", RECALL_DL_STATE=str(missing)), missing)
    assert not (tmp_path / "nonexistent").exists()


def test_the_default_store_is_not_created_by_status(ws: Workspace, tmp_path: Path) -> None:
    data_home = tmp_path / "xdg"
    result = ws.run("status", RECALL_DL_STATE="", XDG_DATA_HOME=str(data_home))
    assert result.returncode == 2
    line = one_line(result.stderr)
    assert "no job store at" in line and "--out" in line
    assert not data_home.exists()


def test_commands_that_work_still_create_the_store(ws: Workspace, tmp_path: Path) -> None:
    state = tmp_path / "new" / "dir" / "x.db"
    added = ws.run("add", ws.sim.bot_ids[0], "--state", str(state))
    assert added.returncode == 0, added.stderr
    assert state.is_file()
    status = ws.run("status", "--json", "--state", str(state))
    assert status.returncode == 0, status.stderr
    assert json.loads(status.stdout)["jobs"] == {"poll_bot": {"pending": 1}}


def test_retry_names_jobs_it_cannot_requeue(ws: Workspace) -> None:
    bot_id = ws.sim.bot_ids[0]
    assert ws.run("add", bot_id).returncode == 0
    pending = f"poll_bot:{bot_id}"

    result = ws.run("retry", "nonexistent-job")
    assert result.returncode == 1, result.stderr
    assert "nonexistent-job: no such job" in result.stderr
    assert "re-queued 0 job(s)" in result.stderr

    result = ws.run("retry", pending, "nonexistent-job")
    assert result.returncode == 1
    assert f"{pending}: pending, not failed" in result.stderr
    assert "nonexistent-job: no such job" in result.stderr


def test_retry_requeues_the_failed_one_and_names_the_rest(ws: Workspace) -> None:
    fatal = ws.sim.add_bot(BotSpec(participants=[ParticipantSpec(id=1)], outcome="fatal"))
    assert ws.run("fetch", fatal).returncode == 1
    (failure,) = json.loads(ws.run("status", "--json").stdout)["failures"]

    result = ws.run("retry", failure["job"], "nonexistent-job")
    assert result.returncode == 0, result.stderr
    assert "re-queued 1 job(s)" in result.stdout
    assert "nonexistent-job: no such job" in result.stderr
    with sqlite3.connect(ws.state) as db:
        (state,) = db.execute("SELECT state FROM jobs WHERE id = ?", (failure["job"],)).fetchone()
    assert state == "pending"

    nothing = ws.run("retry", "--failed")
    assert nothing.returncode == 0
    assert "no failed jobs" in nothing.stdout


def test_retry_without_jobs_is_a_usage_error(ws: Workspace) -> None:
    for argv in (["retry"], ["retry", "--failed", "some-job"]):
        result = ws.run(*argv)
        assert result.returncode == 2
        assert "name JOB ids or pass --failed" in one_line(result.stderr)


@pytest.mark.slow
def test_demo_takes_state(ws: Workspace, tmp_path: Path) -> None:
    out, state = tmp_path / "demo", tmp_path / "elsewhere" / "demo.db"
    result = ws.run("demo", "--out", str(out), "--state", str(state), "--part-size", "4096")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "4 recordings downloaded" in result.stdout
    assert state.is_file()
    assert not (out / ".recall-dl-state.db").exists()
    status = ws.run("status", "--json", "--state", str(state), "--out", str(out))
    assert status.returncode == 0, status.stderr
    assert json.loads(status.stdout)["totals"].get("failed", 0) == 0


def test_demo_help_lists_state(ws: Workspace) -> None:
    result = ws.run("demo", "--help")
    assert result.returncode == 0
    assert "--state" in result.stdout


def test_add_says_when_it_created_the_store_it_queued_into(ws: Workspace, tmp_path: Path) -> None:
    """`add` may run before the service (it creates the store), but a mistyped --state
    would queue bots where no service looks: it says so, once."""
    store = tmp_path / "typo.db"
    bot_id = ws.sim.bot_ids[0]
    first = ws.run("add", bot_id, "--state", str(store))
    assert first.returncode == 0, first.stderr
    assert "queued 1 new bot(s)" in first.stdout
    assert f"created a new job store at {store}" in first.stderr
    again = ws.run("add", bot_id, "--state", str(store))
    assert again.returncode == 0 and "already known" in again.stdout
    assert "created a new job store" not in again.stderr
