"""The PostgreSQL job store: several hosts share one database.

Claims use ``FOR UPDATE SKIP LOCKED`` inside ``UPDATE … RETURNING``, so concurrent claimers
on any host neither wait for nor duplicate each other's jobs. Lease times come from the
database clock (``now()``), so clock skew between hosts cannot make a lease look expired
early or late. Every statement is one transaction unless stated otherwise.

``clock`` exists for tests only: when given, its value replaces the database's now() in
every statement (``rdl_now($1)`` in ``sql/postgres.sql``), so a test can expire a lease
without sleeping. With several hosts in production it must stay None.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Collection, Sequence
from typing import Any

import asyncpg

from downloader.errors import ConfigError, StopService
from downloader.lifecycle import JobKind, JobState, job_id
from downloader.store import queries
from downloader.store.protocol import (
    Job,
    Json,
    Lease,
    NewJob,
    OnConflict,
    StoreCorrupt,
    WorkerInfo,
)
from downloader.store.ratebudget import check_rate_args
from downloader.store.rows import (
    check_claim_args,
    check_lease_seconds,
    dump_json,
    job_from_row,
    refusal,
)

Clock = Callable[[], float]

SCHEMA = "recall_dl"
POOL_MIN_SIZE = 1
POOL_MAX_SIZE = 10
COMMAND_TIMEOUT_SECONDS = 60.0  # no statement of ours should take longer; a stuck one fails
CONNECT_TIMEOUT_SECONDS = 10.0
WORKERS_RECENT_SECONDS = 15 * 60
WORKERS_FORGET_SECONDS = 7 * 24 * 3600

Q = queries.load("postgres.sql")
MIGRATIONS = queries.migrations(Q)
_REARM_IF_FAILED = ", ".join(
    f"{column} = CASE WHEN j.state = 'failed' THEN {rearmed} "
    f"WHEN j.state = 'pending' THEN {waiting} ELSE j.{column} END"
    for column, rearmed, waiting in [
        ("attempts", "0", "j.attempts"),
        ("run_after", "excluded.run_after", "least(j.run_after, excluded.run_after)"),
        ("due", "excluded.due", "j.due OR excluded.due"),
        ("state", "'pending'", "j.state"),
    ]
)
ON_CONFLICT = {
    OnConflict.IGNORE: "ON CONFLICT (id) DO NOTHING",
    OnConflict.UPDATE_PAYLOAD: (
        "ON CONFLICT (id) DO UPDATE SET payload = excluded.payload, "
        "updated_at = excluded.updated_at"
    ),
    OnConflict.REARM: (
        "ON CONFLICT (id) DO UPDATE SET payload = excluded.payload, "
        f"updated_at = excluded.updated_at, {_REARM_IF_FAILED}"
    ),
}
_LIST_FILTERS = ["kind", "state", "parent", "bot_id"]
_PASSWORD = re.compile(r"(://[^:/@]*:)[^@]*@")


class PostgresStore:
    """JobStore over a connection pool. Create with :meth:`open`; always :meth:`close`."""

    def __init__(self, pool: asyncpg.Pool, clock: Clock | None) -> None:
        self._pool = pool
        self._clock = clock

    @classmethod
    async def open(
        cls, url: str, *, clock: Clock | None = None, max_size: int = POOL_MAX_SIZE
    ) -> PostgresStore:
        """Connect, apply pending migrations (once, whichever host comes first), check."""
        try:
            pool = await asyncpg.create_pool(
                url,
                min_size=POOL_MIN_SIZE,
                max_size=max_size,
                timeout=CONNECT_TIMEOUT_SECONDS,
                command_timeout=COMMAND_TIMEOUT_SECONDS,
                server_settings={"search_path": SCHEMA, "application_name": "recall-dl"},
            )
        except (OSError, TimeoutError) as exc:
            # Unreachable (down, restarting, a partition): not a settings error, so the exit
            # status lets systemd restart the service until the database is back.
            raise StopService(f"cannot reach {redact(url)}: {exc}") from exc
        except (asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            raise ConfigError(f"cannot connect to {redact(url)}: {exc}") from exc
        store = cls(pool, clock)
        try:
            await store._migrate()
            await store.integrity_check()
        except asyncpg.PostgresError as exc:  # e.g. no right to create the schema
            await store.close()
            raise ConfigError(f"cannot prepare the job store in {redact(url)}: {exc}") from exc
        except BaseException:
            await store.close()
            raise
        return store

    async def close(self) -> None:
        """Close the pool (waits for connections in use); closing twice is harmless."""
        await self._pool.close()

    @property
    def _now(self) -> float | None:
        return None if self._clock is None else self._clock()

    async def _migrate(self) -> None:
        async with self._pool.acquire() as conn, conn.transaction():
            await conn.execute(Q["migrate_lock"])
            await conn.execute(Q["migrate_prepare"])
            version = await conn.fetchval(Q["schema_version"])
            if version > len(MIGRATIONS):
                raise ConfigError(
                    f"database schema version {version} is newer than this recall-dl "
                    f"understands ({len(MIGRATIONS)}); upgrade recall-dl"
                )
            for script in MIGRATIONS[version:]:
                await conn.execute(script)
            await conn.execute(Q["set_schema_version"], len(MIGRATIONS))

    # -- enqueue and claim ----------------------------------------------------------------

    async def enqueue(
        self, jobs: Sequence[NewJob], on_conflict: OnConflict = OnConflict.IGNORE
    ) -> int:
        mode = OnConflict(on_conflict)
        columns = _enqueue_columns(jobs, keep_last_payload=mode is not OnConflict.IGNORE)
        if not columns[0]:
            return 0
        sql = Q["enqueue"].replace("{on_conflict}", ON_CONFLICT[mode])
        rows = await self._pool.fetch(sql, self._now, *columns)
        return sum(1 for row in rows if row["inserted"])

    async def claim(
        self,
        worker: str,
        *,
        kinds: Collection[JobKind] | None = None,
        limit: int = 1,
        lease_seconds: float,
    ) -> list[Lease]:
        check_claim_args(limit, lease_seconds)
        wanted = sorted({JobKind(k).value for k in kinds} if kinds is not None else JobKind)
        if limit == 0 or not wanted:
            return []
        now = self._now
        # One connection, but no transaction: each statement commits on its own. A
        # transaction left open between statements by a host that froze there (SIGSTOP, a
        # paused VM, a partition) would keep the rows it promoted or claimed locked, hidden
        # from every other host's claims (SKIP LOCKED), until its session died.
        async with self._pool.acquire() as conn:
            await conn.execute(Q["promote_due"], now)
            rows = await conn.fetch(Q["claim"], now, wanted, limit, worker, lease_seconds)
            if rows:
                await conn.execute(Q["touch_worker"], now, worker)
        rows = sorted(rows, key=lambda r: (-r["priority"], r["run_after"], r["seq"]))
        return [Lease(job_from_row(row), row["lease_token"]) for row in rows]

    # -- writes under a lease -------------------------------------------------------------

    async def heartbeat(self, lease: Lease, lease_seconds: float) -> bool:
        check_lease_seconds(lease_seconds)
        args = (self._now, lease.job.id, lease.token, lease_seconds)
        return await self._pool.fetchrow(Q["heartbeat"], *args) is not None

    async def checkpoint(self, lease: Lease, progress: Json) -> None:
        await self._lease_write("checkpoint", lease, dump_json(progress))

    async def finish(self, lease: Lease, result: Json) -> None:
        await self._lease_write("finish", lease, dump_json(result))

    async def reschedule(
        self,
        lease: Lease,
        run_after: float,
        *,
        payload: Json | None = None,
        progress: Json | None = None,
    ) -> None:
        await self._lease_write(
            "reschedule", lease, float(run_after), dump_json(payload), dump_json(progress)
        )

    async def retry_later(
        self, lease: Lease, run_after: float, error: str, *, progress: Json | None = None
    ) -> None:
        await self._lease_write("retry_later", lease, float(run_after), error, dump_json(progress))

    async def fail(self, lease: Lease, reason: str) -> None:
        await self._lease_write("fail", lease, reason)

    async def release(self, lease: Lease) -> None:
        await self._lease_write("release", lease)

    async def _lease_write(self, query: str, lease: Lease, *args: Any) -> None:
        now = self._now
        status = await self._pool.execute(Q[query], now, lease.job.id, lease.token, *args)
        if status.endswith(" 1"):  # "UPDATE 1"
            return
        row = await self._pool.fetchrow(Q["lease_status"], now, lease.job.id)
        raise refusal(lease.job.id, row, lease.token, float(row["now"]) if row else 0.0)

    # -- maintenance ----------------------------------------------------------------------

    async def reclaim_expired(self) -> int:
        now = self._now
        status = await self._pool.execute(Q["reclaim_expired"], now)
        await self._pool.execute(Q["forget_workers"], now, WORKERS_FORGET_SECONDS)
        return _affected(status)

    async def reclaim_worker(self, worker: str) -> int:
        return _affected(await self._pool.execute(Q["reclaim_worker"], self._now, worker))

    async def requeue(self, job_ids: Collection[str] | None = None) -> int:
        if job_ids is None:
            return _affected(await self._pool.execute(Q["requeue_failed"], self._now))
        ids = sorted(set(job_ids))
        return _affected(await self._pool.execute(Q["requeue_ids"], self._now, ids))

    async def integrity_check(self) -> None:
        """Schema present and current, jobs readable. (Page-level checks need amcheck.)"""
        try:
            version = await self._pool.fetchval(Q["schema_version"])
            await self._pool.fetchval(Q["sanity"])
        except asyncpg.PostgresError as exc:
            raise StoreCorrupt(f"job store database fails its check: {exc}") from exc
        if version != len(MIGRATIONS):
            raise StoreCorrupt(
                f"job store database has schema version {version}, expected {len(MIGRATIONS)}"
            )

    # -- reads ----------------------------------------------------------------------------

    async def get(self, job_id: str) -> Job | None:
        row = await self._pool.fetchrow(Q["get_job"], job_id)
        return None if row is None else job_from_row(row)

    async def list_jobs(
        self,
        *,
        kind: JobKind | None = None,
        state: JobState | None = None,
        parent: str | None = None,
        bot_id: str | None = None,
        limit: int | None = None,
    ) -> list[Job]:
        given = dict(zip(_LIST_FILTERS, [kind, state, parent, bot_id], strict=True))
        args: list[Any] = []
        where = []
        for column, value in given.items():
            if value is not None:
                args.append(str(value))
                where.append(f"{column} = ${len(args)}")
        sql = Q["list_jobs"]
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY seq"
        if limit is not None:
            args.append(max(0, limit))
            sql += f" LIMIT ${len(args)}"
        return [job_from_row(row) for row in await self._pool.fetch(sql, *args)]

    async def counts(
        self, *, bot_ids: Collection[str] | None = None
    ) -> dict[tuple[JobKind, JobState], int]:
        if bot_ids is None:
            rows = await self._pool.fetch(Q["counts"])
        else:
            rows = await self._pool.fetch(Q["counts_for_bots"], sorted(set(bot_ids)))
        return {(JobKind(r["kind"]), JobState(r["state"])): int(r["n"]) for r in rows}

    async def workers(self) -> list[WorkerInfo]:
        rows = await self._pool.fetch(Q["workers"], self._now, WORKERS_RECENT_SECONDS)
        return [WorkerInfo(r["worker"], float(r["last_seen"]), int(r["running"])) for r in rows]

    # -- shared rate budget (see downloader.store.ratebudget) --------------------------------

    async def acquire_rate_slot(self, cls: str, limit: int, window_seconds: float) -> float:
        check_rate_args(limit, window_seconds)
        args = (self._now, cls, limit, float(window_seconds))
        return float(await self._pool.fetchval(Q["acquire_rate_slot"], *args))

    async def pause_class(self, cls: str, until: float) -> None:
        await self._pool.execute(Q["pause_class"], cls, float(until))

    async def paused_until(self, cls: str) -> float | None:
        value = await self._pool.fetchval(Q["rate_paused_until"], cls)
        return None if value is None else float(value)

    # -- small tables ---------------------------------------------------------------------

    async def remember_delivery(self, message_id: str) -> bool:
        row = await self._pool.fetchrow(Q["remember_delivery"], self._now, message_id)
        return row is not None

    async def get_cursor(self, name: str) -> str | None:
        value = await self._pool.fetchval(Q["get_cursor"], name)
        return None if value is None else str(value)

    async def set_cursor(self, name: str, value: str) -> None:
        await self._pool.execute(Q["set_cursor"], self._now, name, value)

    async def swap_cursor(self, name: str, expected: str | None, value: str) -> bool:
        status = await self._pool.execute(Q["swap_cursor"], self._now, name, value, expected)
        return _affected(status) == 1


def _enqueue_columns(jobs: Sequence[NewJob], *, keep_last_payload: bool) -> list[list[Any]]:
    """The batch as one array per column (one round trip), one row per job id.

    A job id twice in one batch keeps its first row; in the updating modes it takes the
    last payload, as if the duplicates had been enqueued one after another.
    """
    rows: dict[str, list[Any]] = {}
    for job in jobs:
        kind = JobKind(job.kind)
        ident = job_id(kind, job.key)
        payload = dump_json(job.payload)
        if ident in rows:
            if keep_last_payload:
                rows[ident][3] = payload
            continue
        rows[ident] = [
            ident,
            kind.value,
            job.key,
            payload,
            job.bot_id,
            job.parent,
            int(job.priority),
            float(job.run_after),
        ]
    return [list(column) for column in zip(*rows.values(), strict=True)] or [[]] * 8


def _affected(status: str) -> int:
    """The row count of a command tag such as ``UPDATE 3``."""
    return int(status.rsplit(" ", 1)[-1])


def redact(url: str) -> str:
    """The URL without its password, for messages and logs."""
    return _PASSWORD.sub(r"\1***@", url)
