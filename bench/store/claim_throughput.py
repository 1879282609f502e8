"""Job store throughput at backfill scale: claims, per-bot counts, open/integrity cost.

Fills a store (directly, for speed) with RECORDINGS recordings' worth of jobs, 5 each, as
in the middle of a large backfill (see ``rows``), then measures through the store API:

* claim+finish of download_part jobs by WORKERS concurrent asyncio workers (limit 1),
* claim of API kinds while tens of thousands of parts are pending (must not walk them),
* counts() for everything and for one bot, list_jobs(state=failed), reclaim_expired(),
* open_store() on the full file (SQLite runs PRAGMA integrity_check at open).

    python bench/store/claim_throughput.py [sqlite|postgres|both] [RECORDINGS]
"""

from __future__ import annotations

import asyncio
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import asyncpg

from downloader.lifecycle import API_KINDS, JobKind, JobState
from downloader.store import JobStore, open_store
from downloader.store.pgserver import TempPostgres
from downloader.store.ratebudget import rate_budget

RECORDINGS = 50_000
BOTS = 2_000
WORKERS = 16
CLAIMS = 4_000


COLUMNS = [
    "id",
    "kind",
    "key",
    "state",
    "payload",
    "bot_id",
    "parent",
    "priority",
    "run_after",
    "due",
    "created_at",
    "updated_at",
]


def rows(recordings: int, now: float) -> list[tuple[object, ...]]:
    """Jobs of a backfill 80% through: older recordings done, the newest fifth pending.

    Priorities differ every 10 recordings (soonest expiry first); a quarter of the pending
    parts are backing off (parked 5 min); every finalize job is parked far ahead.
    """
    out: list[tuple[object, ...]] = []
    payload = '{"url":"' + "u" * 600 + '"}'  # pre-signed URLs are long
    for n in range(recordings):
        bot, rec, prio = f"bot{n % BOTS}", f"rec{n}", -(n // 10)
        state = "done" if n < recordings * 4 // 5 else "pending"
        backoff = now + 300 if n % 4 == 0 else now
        for kind, key, run_after in [
            ("resolve_recording", rec, now),
            ("fetch_manifest", "vs" + rec, now),
            ("download_part", rec + "a", backoff),
            ("download_part", rec + "b", now),
            ("finalize_recording", rec, now + 86400),
        ]:
            st = "pending" if kind == "finalize_recording" else state
            due = st == "pending" and run_after <= now
            out.append(
                (f"{kind}:{key}", kind, key, st, payload, bot, rec, prio, run_after, due, now, now)
            )
    return out


async def fill_sqlite(path: Path, recordings: int) -> None:
    await (await open_store(str(path))).close()  # schema
    with sqlite3.connect(path, isolation_level=None) as conn:
        conn.execute("BEGIN")
        marks = ", ".join("?" * len(COLUMNS))
        conn.executemany(
            f"INSERT INTO jobs ({', '.join(COLUMNS)}) VALUES ({marks})",
            rows(recordings, time.time()),
        )
        conn.execute("COMMIT")
    conn.close()


async def fill_postgres(url: str, recordings: int) -> None:
    await (await open_store(url)).close()  # schema
    conn = await asyncpg.connect(url)
    try:
        await conn.copy_records_to_table(
            "jobs",
            schema_name="recall_dl",
            columns=COLUMNS,
            records=[(*r[:4], r[4], *r[5:]) for r in rows(recordings, time.time())],
        )
        await conn.execute("ANALYZE recall_dl.jobs")
    finally:
        await conn.close()


async def timed(label: str, fn: Callable[[], Awaitable[object]], repeat: int = 20) -> None:
    samples = []
    for _ in range(repeat):
        start = time.perf_counter()
        await fn()
        samples.append(time.perf_counter() - start)
    print(f"  {label:<44} median {statistics.median(samples) * 1000:8.2f} ms")


async def claim_finish(store: JobStore) -> None:
    claimed = 0

    async def worker(n: int) -> None:
        nonlocal claimed
        while claimed < CLAIMS:
            leases = await store.claim(f"w{n}", kinds=[JobKind.DOWNLOAD_PART], lease_seconds=60)
            if not leases:
                return
            claimed += 1
            await store.finish(leases[0], {"bytes": 1})

    start = time.perf_counter()
    await asyncio.gather(*(worker(n) for n in range(WORKERS)))
    seconds = time.perf_counter() - start
    print(f"  claim+finish, {WORKERS} workers, limit 1:          {claimed / seconds:8.0f} jobs/s")


async def api_claim(store: JobStore) -> None:
    leases = await store.claim("api", kinds=API_KINDS, lease_seconds=60)
    for lease in leases:
        await store.release(lease)


async def run(url: str) -> None:
    store = await open_store(url)
    try:
        counts = await store.counts()
        total = sum(counts.values())
        due = counts.get((JobKind.DOWNLOAD_PART, JobState.PENDING), 0)
        print(f"  {total} jobs, {due} parts pending")
        await claim_finish(store)
        await timed("claim API kinds (parts, finalize parked)", lambda: api_claim(store))
        await timed(
            "idle claim (poll_bot: none)",
            lambda: store.claim("idle", kinds=[JobKind.POLL_BOT], lease_seconds=60),
        )
        await timed("counts() over all jobs", store.counts, repeat=5)
        await timed("counts(bot_ids=[one bot])", lambda: store.counts(bot_ids=["bot7"]))
        await timed("list_jobs(state=failed)", lambda: store.list_jobs(state=JobState.FAILED))
        await timed("reclaim_expired()", store.reclaim_expired)
        await timed(
            "acquire_rate_slot()",
            lambda: rate_budget(store).acquire_rate_slot("retrieve", 10**6, 60),
        )
    finally:
        await store.close()

    async def reopen() -> None:
        await (await open_store(url)).close()

    await timed("open_store() on the full store", reopen, repeat=3)


async def main(which: str, recordings: int) -> None:
    if which in ("sqlite", "both"):
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "jobs.db"
            print(f"sqlite, {recordings} recordings (WAL, synchronous=FULL, {tmp})")
            await fill_sqlite(path, recordings)
            await run(f"sqlite:///{path}")
            print(f"  file size {path.stat().st_size / 1e6:.0f} MB")
    if which in ("postgres", "both"):
        with TempPostgres() as pg:
            print(f"postgres, {recordings} recordings (throwaway server: fsync off)")
            url = pg.create_database()
            await fill_postgres(url, recordings)
            await run(url)


if __name__ == "__main__":
    asyncio.run(
        main(
            sys.argv[1] if len(sys.argv) > 1 else "both",
            int(sys.argv[2]) if len(sys.argv) > 2 else RECORDINGS,
        )
    )
