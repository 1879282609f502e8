"""PostgreSQL specifics: concurrent first starts, the database clock, connection errors."""

from __future__ import annotations

import time

import anyio
import asyncpg
import pytest

from downloader.errors import ConfigError
from downloader.lifecycle import JobKind
from downloader.store import JobStore, NewJob, open_store
from downloader.store.postgres import MIGRATIONS, Q, redact
from downloader.store.pytest_plugin import pg_server, pg_url

__all__ = ["pg_server", "pg_url"]  # fixtures

pytestmark = [pytest.mark.anyio, pytest.mark.postgres]


async def test_hosts_starting_together_migrate_once(pg_url: str) -> None:
    stores: list[JobStore] = []

    async def start() -> None:
        stores.append(await open_store(pg_url))

    try:
        async with anyio.create_task_group() as tg:
            for _ in range(8):
                tg.start_soon(start)
        await stores[0].enqueue([NewJob(JobKind.POLL_BOT, "b1")])
        assert [len(await s.list_jobs()) for s in stores] == [1] * 8
    finally:
        for store in stores:
            await store.close()
    conn = await asyncpg.connect(pg_url)
    try:
        versions = await conn.fetch("SELECT version FROM recall_dl.schema_version")
        assert [v["version"] for v in versions] == [len(MIGRATIONS)]
    finally:
        await conn.close()


async def test_lease_times_come_from_the_database_clock(pg_url: str) -> None:
    conn = await asyncpg.connect(pg_url)
    store = await open_store(pg_url)
    try:
        await store.enqueue([NewJob(JobKind.POLL_BOT, "b1")])
        (lease,) = await store.claim("w", lease_seconds=30)
        db_now = await conn.fetchval("SELECT extract(epoch FROM now())::float8")
        assert lease.job.lease_until is not None
        assert abs(lease.job.lease_until - 30 - db_now) < 5
        assert abs(lease.job.created_at - time.time()) < 5  # same host here, so close
        await store.finish(lease, {})
    finally:
        await store.close()
        await conn.close()


async def test_a_database_that_does_not_exist_is_a_config_error(pg_url: str) -> None:
    missing = pg_url.rsplit("/", 1)[0] + "/no_such_db"
    with pytest.raises(ConfigError, match="no_such_db"):
        await open_store(missing)


def test_redact_hides_the_password() -> None:
    assert redact("postgresql://u:s3cret@h:5432/db") == "postgresql://u:***@h:5432/db"
    assert redact("postgresql://u@h/db") == "postgresql://u@h/db"


async def test_claims_read_indexes_not_the_table(pg_url: str) -> None:
    store = await open_store(pg_url)
    conn = await asyncpg.connect(pg_url, server_settings={"search_path": "recall_dl"})
    try:
        far = time.time() + 3600
        parked = [
            NewJob(JobKind.FINALIZE_RECORDING, f"r{i}", priority=i, run_after=far)
            for i in range(5000)
        ]
        done = [NewJob(JobKind.DOWNLOAD_PART, f"p{i}") for i in range(5000)]
        await store.enqueue(parked + done)
        while leases := await store.claim(
            "w", kinds=[JobKind.DOWNLOAD_PART], limit=500, lease_seconds=60
        ):
            for lease in leases:
                await store.finish(lease, {})
        await conn.execute("ANALYZE jobs")
        claim = Q["claim"]
        plan = "\n".join(
            r[0]
            for r in await conn.fetch(
                "EXPLAIN " + claim, None, ["finalize_recording"], 1, "w", 60.0
            )
        )
        assert "jobs_claim" in plan, plan
        promote = "\n".join(r[0] for r in await conn.fetch("EXPLAIN " + Q["promote_due"], None))
        assert "jobs_parked" in promote, promote
    finally:
        await conn.close()
        await store.close()
