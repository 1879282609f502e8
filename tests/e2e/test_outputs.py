"""Done in the job store means on disk under this --out: folders, deleted files, stores."""

from __future__ import annotations

import shutil
from pathlib import Path

from tests.e2e.cli import Workspace, files_under
from tests.e2e.test_fetch import assert_bot_complete


def mp4s(folder: Path) -> list[Path]:
    return [p for p in files_under(folder) if p.suffix == ".mp4"]


def test_each_output_folder_gets_its_own_default_store(ws: Workspace, tmp_path: Path) -> None:
    bot_id = ws.sim.bot_ids[0]
    first, second = tmp_path / "first", tmp_path / "second"
    for out in (first, second):
        result = ws.run(
            "fetch",
            bot_id,
            RECALL_DL_OUT=str(out),
            RECALL_DL_STATE="",  # the default store
            XDG_DATA_HOME=str(tmp_path / "xdg"),
        )
        assert result.returncode == 0, result.stderr[-2000:]
    assert len(mp4s(first)) == len(mp4s(second)) > 0
    stores = list((tmp_path / "xdg" / "recall-dl" / "states").glob("*.db"))
    assert len(stores) == 2


def test_a_deleted_file_is_fetched_again(ws: Workspace) -> None:
    bot_id = ws.sim.bot_ids[0]
    assert ws.run("fetch", bot_id).returncode == 0
    victim = mp4s(ws.out)[0]
    sidecar = next(ws.out.rglob("manifest.json"))
    victim.unlink()
    sidecar.unlink()

    result = ws.run("fetch", bot_id)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "outputs_missing_requeued" in result.stderr
    assert_bot_complete(ws, bot_id)


def test_one_sqlite_store_serves_one_output_folder(ws: Workspace, tmp_path: Path) -> None:
    bot_id = ws.sim.bot_ids[0]
    assert ws.run("fetch", bot_id).returncode == 0
    other = tmp_path / "elsewhere"
    result = ws.run("fetch", ws.sim.bot_ids[1], RECALL_DL_OUT=str(other))
    assert result.returncode == 2
    assert str(ws.out.resolve()) in result.stderr and "--state" in result.stderr
    assert not mp4s(other)  # nothing was downloaded into the wrong place
    assert ws.sim.bot_ids[1] not in {p.name for p in ws.out.iterdir()}


def test_verify_reports_what_the_store_has_but_the_disk_lost(ws: Workspace) -> None:
    bot_id = ws.sim.bot_ids[0]
    assert ws.run("fetch", bot_id).returncode == 0
    parts = len(mp4s(ws.out / bot_id))
    shutil.rmtree(ws.out / bot_id)  # every file and sidecar of the bot, gone

    result = ws.run("verify")
    assert result.returncode == 1
    lines = result.stdout.splitlines()
    assert sum(line.startswith("missing: ") for line in lines) == parts
    assert sum(line.startswith("sidecar missing: ") for line in lines) == 1
    assert f"checked {parts} part(s): {parts + 1} problem(s)" in result.stdout

    assert ws.run("verify", "--repair").returncode == 1
    assert ws.run("fetch", bot_id).returncode == 0
    assert_bot_complete(ws, bot_id)
    assert ws.run("verify").returncode == 0


def test_verify_reports_a_damaged_sidecar_and_repair_rewrites_it(ws: Workspace) -> None:
    bot_id = ws.sim.bot_ids[0]
    assert ws.run("fetch", bot_id).returncode == 0
    sidecar = next((ws.out / bot_id).rglob("manifest.json"))
    for damage in (b"{bad", b"{}", b'{"parts": "none"}'):
        sidecar.write_bytes(damage)
        result = ws.run("verify")
        assert result.returncode == 1, result.stderr[-2000:]
        assert "Traceback" not in result.stderr
        assert "sidecar unreadable: " in result.stdout
        assert f"(recording {sidecar.parent.name})" in result.stdout

    assert ws.run("verify", "--repair").returncode == 1
    assert not sidecar.exists()
    assert ws.run("fetch", bot_id).returncode == 0
    assert_bot_complete(ws, bot_id)  # the sidecar is written again, listing every part
    assert ws.run("verify").returncode == 0
