"""The SQLite job store: one host, any number of processes sharing one WAL file.

Every call runs on one dedicated thread that owns the connection, and each write is one
synchronous ``BEGIN IMMEDIATE … COMMIT`` function on that thread. That keeps a transaction
whole even when the awaiting task is cancelled (the thread finishes or rolls back on its
own), needs no lock between tasks of one process, and costs one thread hop per operation
rather than one per statement. Other processes are kept out by SQLite's own write lock:
``BEGIN IMMEDIATE`` takes it up front, so ``busy_timeout`` is honoured (a deferred
transaction that upgrades to a writer gets SQLITE_BUSY at once instead).

Times come from the injected clock, read *inside* the write transaction so that a process
that waited for the lock never writes with a stale "now".
"""

from __future__ import annotations

import asyncio
import functools
import json
import os
import secrets
import sqlite3
import time
from collections.abc import Callable, Collection, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from downloader.errors import ConfigError
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
from downloader.store.ratebudget import check_rate_args, slot_wait
from downloader.store.rows import (
    check_claim_args,
    check_lease_seconds,
    dump_json,
    job_from_row,
    refusal,
)

T = TypeVar("T")
Clock = Callable[[], float]
Conn = sqlite3.Connection

BUSY_TIMEOUT_SECONDS = 30.0  # a writer in another process holds the lock for milliseconds
OPEN_CHECK_MAX_BYTES = 64 * 1024 * 1024  # quick_check at open only up to this file size
WORKERS_RECENT_SECONDS = 15 * 60  # workers() lists those seen this recently (or holding jobs)
WORKERS_FORGET_SECONDS = 7 * 24 * 3600  # reclaim_expired drops idle workers older than this

Q = queries.load("sqlite.sql")
MIGRATIONS = queries.migrations(Q)
_CORRUPT = frozenset({"SQLITE_NOTADB", "SQLITE_CORRUPT"})
_CANNOT_OPEN = frozenset({"SQLITE_CANTOPEN", "SQLITE_PERM", "SQLITE_READONLY", "SQLITE_AUTH"})
_LIST_FILTERS = {
    "kind": "kind = :kind",
    "state": "state = :state",
    "parent": "parent = :parent",
    "bot_id": "bot_id = :bot_id",
}


class SqliteStore:
    """JobStore over one SQLite file. Create with :meth:`open`; always :meth:`close`."""

    def __init__(self, path: Path, clock: Clock) -> None:
        self.path = path
        self._clock = clock
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="recall-dl-sqlite")
        self._conn: Conn | None = None
        self._closed = False

    @classmethod
    async def open(cls, path: Path, *, clock: Clock | None = None) -> SqliteStore:
        """Open (creating and migrating when needed) and check the file's integrity."""
        store = cls(path, clock or time.time)
        try:
            await store._call(store._connect)
        except BaseException:
            await store.close()
            raise
        return store

    # -- plumbing -------------------------------------------------------------------------

    async def _call(self, fn: Callable[..., T], *args: Any) -> T:
        loop = asyncio.get_running_loop()
        call = functools.partial(self._translated, fn, *args)
        return await loop.run_in_executor(self._thread, call)

    def _translated(self, fn: Callable[..., T], *args: Any) -> T:
        with _translate_errors(self.path):
            return fn(*args)

    @property
    def _db(self) -> Conn:
        if self._conn is None:
            raise RuntimeError("the store is closed")
        return self._conn

    def _write_light(self, fn: Callable[..., T], *args: Any) -> T:
        """``_write`` without the fsync at commit (WAL ``synchronous = NORMAL``): for the
        rate budget, written once per API request, where losing the last few entries in a
        power cut is harmless and an fsync each would slow every request."""
        conn = self._db
        conn.execute("PRAGMA synchronous = NORMAL")
        try:
            return self._write(fn, *args)
        finally:
            conn.execute("PRAGMA synchronous = FULL")

    def _write(self, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn(conn, now, *args)`` in one BEGIN IMMEDIATE transaction (on the thread)."""
        conn = self._db
        conn.execute("BEGIN IMMEDIATE")
        try:
            result = fn(conn, self._clock(), *args)
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        return result

    def _connect(self) -> None:
        _create_private(self.path)
        conn = sqlite3.connect(
            self.path, timeout=BUSY_TIMEOUT_SECONDS, isolation_level=None, cached_statements=64
        )
        try:
            conn.row_factory = sqlite3.Row
            conn.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_SECONDS * 1000)}")
            mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if mode != "wal":
                raise ConfigError(f"state file {self.path}: cannot use WAL mode (got {mode})")
            conn.execute("PRAGMA synchronous = FULL")
            conn.execute("PRAGMA foreign_keys = ON")
            _check_at_open(conn, self.path)
            self._conn = conn
            self._write(_migrate, self.path)
        except BaseException:
            self._conn = None
            conn.close()
            raise

    def _close_connection(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    async def close(self) -> None:
        """Close the connection and stop the thread; closing twice is harmless."""
        if self._closed:
            return
        self._closed = True
        try:
            await self._call(self._close_connection)
        finally:
            self._thread.shutdown(wait=True)

    # -- enqueue and claim ----------------------------------------------------------------

    async def enqueue(
        self, jobs: Sequence[NewJob], on_conflict: OnConflict = OnConflict.IGNORE
    ) -> int:
        rows = [_new_job_params(job) for job in jobs]
        if not rows:
            return 0
        return await self._call(self._write, _enqueue, rows, OnConflict(on_conflict))

    async def claim(
        self,
        worker: str,
        *,
        kinds: Collection[JobKind] | None = None,
        limit: int = 1,
        lease_seconds: float,
    ) -> list[Lease]:
        check_claim_args(limit, lease_seconds)
        wanted = sorted({JobKind(k) for k in kinds} if kinds is not None else set(JobKind))
        if limit == 0 or not wanted:
            return []
        # An idle poll reads without taking the write lock, so idle workers in other
        # processes do not queue behind each other; the claim itself re-reads under the lock.
        if not await self._call(self._read, _anything_to_claim, wanted):
            return []
        request = _ClaimRequest(worker, wanted, limit, lease_seconds)
        return await self._call(self._write, _claim, request)

    def _read(self, fn: Callable[..., T], *args: Any) -> T:
        return fn(self._db, self._clock(), *args)

    # -- writes under a lease -------------------------------------------------------------

    async def heartbeat(self, lease: Lease, lease_seconds: float) -> bool:
        check_lease_seconds(lease_seconds)
        return await self._call(self._write, _heartbeat, lease, lease_seconds)

    async def checkpoint(self, lease: Lease, progress: Json) -> None:
        await self._lease_write("checkpoint", lease, progress=dump_json(progress))

    async def finish(self, lease: Lease, result: Json) -> None:
        await self._lease_write("finish", lease, result=dump_json(result))

    async def reschedule(
        self,
        lease: Lease,
        run_after: float,
        *,
        payload: Json | None = None,
        progress: Json | None = None,
    ) -> None:
        await self._lease_write(
            "reschedule",
            lease,
            run_after=run_after,
            payload=dump_json(payload),
            progress=dump_json(progress),
        )

    async def retry_later(
        self, lease: Lease, run_after: float, error: str, *, progress: Json | None = None
    ) -> None:
        await self._lease_write(
            "retry_later", lease, run_after=run_after, error=error, progress=dump_json(progress)
        )

    async def fail(self, lease: Lease, reason: str) -> None:
        await self._lease_write("fail", lease, error=reason)

    async def release(self, lease: Lease) -> None:
        await self._lease_write("release", lease)

    async def _lease_write(self, query: str, lease: Lease, **params: Any) -> None:
        await self._call(self._write, _lease_write, query, lease, params)

    # -- maintenance ----------------------------------------------------------------------

    async def reclaim_expired(self) -> int:
        return await self._call(self._write, _reclaim_expired)

    async def reclaim_worker(self, worker: str) -> int:
        return await self._call(self._write, _reclaim_worker, worker)

    async def requeue(self, job_ids: Collection[str] | None = None) -> int:
        ids = None if job_ids is None else json.dumps(sorted(set(job_ids)))
        return await self._call(self._write, _requeue, ids)

    async def integrity_check(self) -> None:
        """The full ``PRAGMA integrity_check`` (seconds on a large file; run it from verify)."""
        await self._call(self._read, lambda conn, _now: _check(conn, self.path, "integrity_check"))

    # -- reads ----------------------------------------------------------------------------

    async def get(self, job_id: str) -> Job | None:
        row = await self._call(self._read, _fetchone, "get_job", {"id": job_id})
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
        given = {"kind": kind, "state": state, "parent": parent, "bot_id": bot_id}
        params: dict[str, Any] = {k: str(v) for k, v in given.items() if v is not None}
        sql = Q["list_jobs"]
        if params:
            sql += " WHERE " + " AND ".join(_LIST_FILTERS[k] for k in params)
        sql += " ORDER BY seq"
        if limit is not None:
            sql += " LIMIT :limit"
            params["limit"] = max(0, limit)
        rows = await self._call(self._read, _fetchall_sql, sql, params)
        return [job_from_row(r) for r in rows]

    async def counts(
        self, *, bot_ids: Collection[str] | None = None
    ) -> dict[tuple[JobKind, JobState], int]:
        if bot_ids is None:
            rows = await self._call(self._read, _fetchall, "counts", {})
        else:
            ids = json.dumps(sorted(set(bot_ids)))
            rows = await self._call(self._read, _fetchall, "counts_for_bots", {"bot_ids": ids})
        return {(JobKind(r["kind"]), JobState(r["state"])): int(r["n"]) for r in rows}

    async def workers(self) -> list[WorkerInfo]:
        rows = await self._call(self._read, _workers)
        return [WorkerInfo(r["worker"], float(r["last_seen"]), int(r["running"])) for r in rows]

    # -- shared rate budget (see downloader.store.ratebudget) --------------------------------
    # The budget lives in the same file, serialised by the same write lock.

    async def acquire_rate_slot(self, cls: str, limit: int, window_seconds: float) -> float:
        check_rate_args(limit, window_seconds)
        return await self._call(self._write_light, _acquire_rate_slot, cls, limit, window_seconds)

    async def pause_class(self, cls: str, until: float) -> None:
        await self._call(self._write, _execute, "pause_class", {"cls": cls, "until": until})

    async def paused_until(self, cls: str) -> float | None:
        row = await self._call(self._read, _fetchone, "rate_paused_until", {"cls": cls})
        return None if row is None else float(row["paused_until"])

    # -- small tables ---------------------------------------------------------------------

    async def remember_delivery(self, message_id: str) -> bool:
        return await self._call(self._write, _remember_delivery, message_id)

    async def get_cursor(self, name: str) -> str | None:
        row = await self._call(self._read, _fetchone, "get_cursor", {"name": name})
        return None if row is None else str(row["value"])

    async def set_cursor(self, name: str, value: str) -> None:
        await self._call(self._write, _execute, "set_cursor", {"name": name, "value": value})

    async def swap_cursor(self, name: str, expected: str | None, value: str) -> bool:
        params = {"name": name, "value": value, "expected": expected}
        return bool(await self._call(self._write, _rowcount, "swap_cursor", params))


# -- transaction bodies: plain functions of (conn, now, ...) run on the store's thread --------


@contextmanager
def _translate_errors(path: Path) -> Iterator[None]:
    """sqlite3 errors become StoreCorrupt / ConfigError at this boundary; others pass."""
    try:
        yield
    except sqlite3.DatabaseError as exc:
        name = getattr(exc, "sqlite_errorname", "")
        if name in _CORRUPT:
            raise StoreCorrupt(f"state file {path} is damaged or not a SQLite database") from exc
        if name in _CANNOT_OPEN:
            raise ConfigError(f"cannot open state file {path}: {exc}") from exc
        raise


def _check_at_open(conn: Conn, path: Path) -> None:
    """Catch a damaged file before working on it, at a bounded cost.

    ``quick_check`` verifies every page and b-tree but not that indexes match their tables;
    it reads the whole file, ~1 s per 100 MB, so larger files get only the structural
    checks every statement makes anyway (SQLITE_CORRUPT still surfaces as StoreCorrupt).
    """
    conn.execute("SELECT count(*) FROM sqlite_schema").fetchone()  # header + schema readable
    if path.stat().st_size <= OPEN_CHECK_MAX_BYTES:
        _check(conn, path, "quick_check")


def _check(conn: Conn, path: Path, query: str) -> None:
    problems = [row[0] for row in conn.execute(Q[query])]
    if problems != ["ok"]:
        raise StoreCorrupt(f"state file {path} fails its integrity check: {problems[0]}")


def _migrate(conn: Conn, _now: float, path: Path) -> None:
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    if version > len(MIGRATIONS):
        raise ConfigError(
            f"state file {path} has schema version {version}, newer than this recall-dl "
            f"understands ({len(MIGRATIONS)}); upgrade recall-dl"
        )
    for script in MIGRATIONS[version:]:
        for statement in _statements(script):
            conn.execute(statement)
    # PRAGMA takes no parameters; the value is an int we computed.
    conn.execute(f"PRAGMA user_version = {len(MIGRATIONS)}")


def _statements(script: str) -> Iterator[str]:
    """Split a script into statements (executescript would COMMIT our transaction)."""
    pending = ""
    for line in script.splitlines(keepends=True):
        pending += line
        if sqlite3.complete_statement(pending):
            yield pending.strip()
            pending = ""
    if pending.strip() and not pending.strip().startswith("--"):
        yield pending.strip()


def _new_job_params(job: NewJob) -> dict[str, Any]:
    kind = JobKind(job.kind)
    return {
        "id": job_id(kind, job.key),
        "kind": kind.value,
        "key": job.key,
        "payload": job.payload,  # serialised inside the transaction: a bad one aborts it all
        "bot_id": job.bot_id,
        "parent": job.parent,
        "priority": int(job.priority),
        "run_after": float(job.run_after),
    }


def _enqueue(conn: Conn, now: float, rows: list[dict[str, Any]], mode: OnConflict) -> int:
    new = 0
    for row in rows:
        payload = dump_json(row["payload"])
        params = {**row, "payload": payload, "now": now, "run_after": row["run_after"] or now}
        if conn.execute(Q["insert_job"], params).rowcount == 1:
            new += 1
            continue
        if mode is OnConflict.IGNORE:
            continue
        conn.execute(Q["update_payload"], params)
        if mode is OnConflict.REARM:
            conn.execute(Q["rearm_failed"], params)
            conn.execute(Q["rearm_waiting"], params)
    return new


def _candidates(conn: Conn, now: float, kinds: list[JobKind], limit: int) -> list[sqlite3.Row]:
    """The ``limit`` best due jobs over ``kinds``: one short index range per kind, merged."""
    found: list[sqlite3.Row] = []
    for kind in kinds:
        params = {"kind": kind.value, "now": now, "limit": limit}
        found.extend(conn.execute(Q["claim_candidates"], params))
    found.sort(key=lambda r: (-r["priority"], r["run_after"], r["seq"]))
    return found[:limit]


@dataclass(frozen=True)
class _ClaimRequest:
    worker: str
    kinds: list[JobKind]
    limit: int
    lease_seconds: float


def _anything_to_claim(conn: Conn, now: float, kinds: list[JobKind]) -> bool:
    if conn.execute(Q["any_promotable"], {"now": now}).fetchone() is not None:
        return True
    return bool(_candidates(conn, now, kinds, 1))


def _claim(conn: Conn, now: float, req: _ClaimRequest) -> list[Lease]:
    conn.execute(Q["promote_due"], {"now": now})
    leases = []
    for candidate in _candidates(conn, now, req.kinds, req.limit):
        token = secrets.token_hex(16)
        params = {
            "seq": candidate["seq"],
            "token": token,
            "worker": req.worker,
            "lease_until": now + req.lease_seconds,
            "now": now,
        }
        row = conn.execute(Q["claim_take"], params).fetchone()
        if row is not None:  # always, as we hold the write lock; checked for safety
            leases.append(Lease(job_from_row(row), token))
    if leases:
        conn.execute(Q["touch_worker"], {"worker": req.worker, "now": now})
    return leases


def _heartbeat(conn: Conn, now: float, lease: Lease, lease_seconds: float) -> bool:
    params = {
        "id": lease.job.id,
        "token": lease.token,
        "now": now,
        "lease_until": now + lease_seconds,
    }
    row = conn.execute(Q["heartbeat"], params).fetchone()
    if row is None:
        return False
    conn.execute(Q["touch_worker"], {"worker": row["worker"], "now": now})
    return True


def _lease_write(conn: Conn, now: float, query: str, lease: Lease, params: dict[str, Any]) -> None:
    full = {**params, "id": lease.job.id, "token": lease.token, "now": now}
    if conn.execute(Q[query], full).rowcount == 1:
        return
    status = conn.execute(Q["lease_status"], {"id": lease.job.id}).fetchone()
    raise refusal(lease.job.id, status, lease.token, now)


def _reclaim_expired(conn: Conn, now: float) -> int:
    count = conn.execute(Q["reclaim_expired"], {"now": now}).rowcount
    conn.execute(Q["forget_workers"], {"before": now - WORKERS_FORGET_SECONDS})
    return count


def _reclaim_worker(conn: Conn, now: float, worker: str) -> int:
    return conn.execute(Q["reclaim_worker"], {"now": now, "worker": worker}).rowcount


def _requeue(conn: Conn, now: float, ids: str | None) -> int:
    if ids is None:
        return conn.execute(Q["requeue_failed"], {"now": now}).rowcount
    return conn.execute(Q["requeue_ids"], {"now": now, "ids": ids}).rowcount


def _remember_delivery(conn: Conn, now: float, message_id: str) -> bool:
    params = {"message_id": message_id, "now": now}
    return conn.execute(Q["remember_delivery"], params).rowcount == 1


def _workers(conn: Conn, now: float) -> list[sqlite3.Row]:
    return conn.execute(Q["workers"], {"since": now - WORKERS_RECENT_SECONDS}).fetchall()


def _execute(conn: Conn, now: float, query: str, params: dict[str, Any]) -> None:
    conn.execute(Q[query], {**params, "now": now})


def _rowcount(conn: Conn, now: float, query: str, params: dict[str, Any]) -> int:
    return conn.execute(Q[query], {**params, "now": now}).rowcount


def _fetchone(conn: Conn, _now: float, query: str, params: dict[str, Any]) -> Any:
    return conn.execute(Q[query], params).fetchone()


def _fetchall(conn: Conn, _now: float, query: str, params: dict[str, Any]) -> list[Any]:
    return conn.execute(Q[query], params).fetchall()


def _fetchall_sql(conn: Conn, _now: float, sql: str, params: dict[str, Any]) -> list[Any]:
    return conn.execute(sql, params).fetchall()


def _acquire_rate_slot(conn: Conn, now: float, cls: str, limit: int, window: float) -> float:
    paused = conn.execute(Q["rate_paused_until"], {"cls": cls}).fetchone()
    if paused is not None and paused["paused_until"] > now:
        return float(paused["paused_until"]) - now
    conn.execute(Q["rate_prune"], {"cls": cls, "now": now, "window": window})
    recent = [row["at"] for row in conn.execute(Q["rate_window"], {"cls": cls})]
    wait = slot_wait(recent, limit, window, now)
    if wait == 0.0:
        conn.execute(Q["rate_record"], {"cls": cls, "now": now})
    return wait


def _create_private(path: Path) -> None:
    """Create a new state file readable by its owner only (SQLite gives its -wal and -shm
    files the database's mode): jobs hold pre-signed media URLs, bearer secrets for hours.
    An existing file keeps the mode its operator gave it."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    except FileExistsError:
        return
    os.close(fd)
