"""Opening a SQLite store: URLs, locations, settings, damaged files, schema versions."""

from __future__ import annotations

import os
import sqlite3
import stat
from pathlib import Path

import pytest

from downloader.errors import ConfigError
from downloader.lifecycle import JobKind
from downloader.store import NewJob, StoreCorrupt, location, open_store, sqlite_path
from downloader.store import sqlite as sqlite_store
from downloader.store.ratebudget import rate_budget
from downloader.store.sqlite import MIGRATIONS, _statements
from downloader.store.testing import FakeClock

pytestmark = pytest.mark.anyio


@pytest.mark.parametrize(
    ("url", "path"),
    [
        ("sqlite:///var/lib/recall-dl/jobs.db", "/var/lib/recall-dl/jobs.db"),
        ("sqlite:////var/lib/recall-dl/jobs.db", "/var/lib/recall-dl/jobs.db"),
        ("/var/lib/recall-dl/jobs.db", "/var/lib/recall-dl/jobs.db"),
        ("state/jobs.db", "state/jobs.db"),
    ],
)
def test_sqlite_path(url: str, path: str) -> None:
    assert sqlite_path(url) == Path(path)


@pytest.mark.parametrize("url", ["sqlite://relative.db", "sqlite:///x.db?mode=ro", ""])
def test_bad_sqlite_urls(url: str) -> None:
    with pytest.raises(ConfigError):
        sqlite_path(url)


@pytest.mark.parametrize("url", ["mysql://h/db", "redis://localhost", "http://x/y"])
async def test_unknown_scheme_is_a_config_error(url: str) -> None:
    with pytest.raises(ConfigError, match="unknown job store scheme"):
        await open_store(url)


async def test_plain_path_creates_parents_and_sets_pragmas(tmp_path: Path) -> None:
    path = tmp_path / "a" / "b" / "jobs.db"
    store = await open_store(str(path))
    await store.close()
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS)
    conn.close()


async def test_a_new_state_file_is_private_an_existing_one_keeps_its_mode(
    tmp_path: Path,
) -> None:
    """Jobs hold pre-signed media URLs (bearer secrets for hours)."""
    path = tmp_path / "new" / "jobs.db"
    store = await open_store(str(path))
    try:
        await store.set_cursor("probe", "x")  # a write: the WAL file exists now
        for file in (path, path.with_name("jobs.db-wal")):
            assert stat.S_IMODE(file.stat().st_mode) == 0o600, file
        assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    finally:
        await store.close()
    shared = tmp_path / "shared.db"
    shared.touch(mode=0o640)
    shared.chmod(0o640)
    store = await open_store(str(shared))
    await store.close()
    assert stat.S_IMODE(shared.stat().st_mode) == 0o640  # the operator's choice stands


async def test_unwritable_directory_is_a_config_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # As root every directory is writable, so the permission answer is simulated.
    monkeypatch.setattr(os, "access", lambda *_a, **_k: False)
    with pytest.raises(ConfigError, match="not writable"):
        await open_store(f"sqlite:///{tmp_path}/jobs.db")


async def test_a_file_where_the_directory_should_be(tmp_path: Path) -> None:
    (tmp_path / "blocker").write_text("x")
    with pytest.raises(ConfigError, match="cannot create state directory"):
        await open_store(f"sqlite:///{tmp_path}/blocker/jobs.db")


def test_network_filesystems_are_told_apart(tmp_path: Path) -> None:
    mounts = tmp_path / "mounts"
    mounts.write_text(
        "/dev/sda1 / ext4 rw 0 0\n"
        "server:/export /mnt/with\\040space nfs4 rw 0 0\n"
        "//nas/share /mnt/smb cifs rw 0 0\n"
    )
    assert location.filesystem_type(Path("/var/lib"), mounts) == "ext4"
    assert location.filesystem_type(Path("/mnt/with space/x"), mounts) == "nfs4"
    assert location.filesystem_type(Path("/mnt/smb"), mounts) == "cifs"
    assert location.filesystem_type(Path("/mnt/smbx"), mounts) == "ext4"


async def test_a_state_file_on_nfs_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(location, "filesystem_type", lambda _d: "nfs4")
    with pytest.raises(ConfigError, match="nfs4 filesystem"):
        await open_store(f"sqlite:///{tmp_path}/jobs.db")


async def test_not_a_database_is_store_corrupt_naming_the_file(tmp_path: Path) -> None:
    path = tmp_path / "jobs.db"
    path.write_bytes(os.urandom(8192))
    with pytest.raises(StoreCorrupt, match=str(path)) as info:
        await open_store(str(path))
    assert "\n" not in str(info.value)


async def damaged_store(path: Path) -> None:
    store = await open_store(str(path))
    await store.enqueue([NewJob(JobKind.DOWNLOAD_PART, f"p{i}" * 20) for i in range(2000)])
    await store.close()
    damage(path)


def damage(path: Path) -> None:
    with sqlite3.connect(path) as conn:  # fold the WAL in so the damage hits the main file
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    data = bytearray(path.read_bytes())
    page = 4096
    for offset in range(page * 3, min(len(data), page * 12), page):
        data[offset + page - 1500 : offset + page] = os.urandom(1500)  # where cells live
    path.write_bytes(bytes(data))


async def test_damaged_pages_are_store_corrupt(tmp_path: Path) -> None:
    path = tmp_path / "jobs.db"
    await damaged_store(path)
    with pytest.raises(StoreCorrupt, match=str(path)):
        await open_store(str(path))


async def test_a_large_damaged_file_is_caught_by_integrity_check(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "jobs.db"
    await damaged_store(path)
    monkeypatch.setattr(sqlite_store, "OPEN_CHECK_MAX_BYTES", 0)  # as if it were huge
    with pytest.raises(StoreCorrupt, match=str(path)):
        await open_and_check(path)  # open may already fail on a damaged schema page


async def open_and_check(path: Path) -> None:
    store = await open_store(str(path))
    try:
        await store.integrity_check()
    finally:
        await store.close()


async def test_a_newer_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "jobs.db"
    await (await open_store(str(path))).close()
    with sqlite3.connect(path) as conn:
        conn.execute(f"PRAGMA user_version = {len(MIGRATIONS) + 1}")
    conn.close()
    with pytest.raises(ConfigError, match="newer than this recall-dl"):
        await open_store(str(path))


async def test_the_first_schema_is_migrated_keeping_its_jobs(
    tmp_path: Path, clock: FakeClock
) -> None:
    path = tmp_path / "jobs.db"
    with sqlite3.connect(path, isolation_level=None) as conn:  # as the first release left it
        for statement in _statements(MIGRATIONS[0]):
            conn.execute(statement)
        conn.execute(
            "INSERT INTO jobs (id, kind, key, state, payload, run_after, created_at, updated_at)"
            " VALUES ('poll_bot:b1', 'poll_bot', 'b1', 'pending', '{}', ?, ?, ?)",
            (clock() + 10, clock(), clock()),
        )
        conn.execute("PRAGMA user_version = 1")
    conn.close()

    store = await open_store(str(path), clock=clock)
    try:
        assert [job.key for job in await store.list_jobs()] == ["b1"]
        assert await store.claim("w", lease_seconds=30) == []  # not due yet
        clock.advance(10)
        (lease,) = await store.claim("w", lease_seconds=30)
        assert lease.job.key == "b1"
        assert await rate_budget(store).acquire_rate_slot("list", 1, 60) == 0.0
    finally:
        await store.close()
