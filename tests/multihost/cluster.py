"""Several `recall-dl run` processes sharing one PostgreSQL database: what the test observes.

Nothing here stands in for a component: the processes are the real service started as
subprocesses (see ``tests/service/harness.py``), the database is a real PostgreSQL server,
and every observation is read from the database, ``/proc``, the processes' JSON logs or the
simulator's own statistics.
"""

from __future__ import annotations

import asyncio
import bisect
import json
import os
import select
import socket
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import asyncpg

T = TypeVar("T")

POLL_SECONDS = 0.05
LEASE_LOST_EVENTS = frozenset(
    {"lease_lost", "job_abandoned_lease_lost", "job_outcome_dropped_lease_lost"}
)


class Db:
    """One connection to the shared database, for reading what the hosts did (sync API)."""

    def __init__(self, url: str) -> None:
        self._runner = asyncio.Runner()
        self._conn: Any = self._runner.run(asyncpg.connect(url))

    def fetch(self, sql: str, *args: object) -> list[Any]:
        rows: list[Any] = self._runner.run(self._conn.fetch(sql, *args))
        return rows

    def execute(self, sql: str) -> None:
        self._runner.run(self._conn.execute(sql))

    def value(self, sql: str, *args: object) -> Any:
        return self._runner.run(self._conn.fetchval(sql, *args))

    def now(self) -> float:
        """The database clock (the clock every lease is timed by), epoch seconds."""
        return float(self.value("SELECT extract(epoch FROM clock_timestamp())::float8"))

    def close(self) -> None:
        try:
            self._runner.run(self._conn.close())
        finally:
            self._runner.close()


def worker_id(pid: int) -> str:
    """The lease holder name a service process uses (``downloader.pipeline.context``)."""
    return f"{socket.gethostname()}:{pid}"


def wait_for(
    what: str,
    probe: Callable[[], T | None],
    *,
    timeout: float,
    news: Callable[[float], object],
    alive: Callable[[], str | None] = lambda: None,
    explain: Callable[[], str] = lambda: "",
) -> T:
    """Check ``probe`` until it returns something other than None/False; fail after ``timeout``.

    Between checks, ``news(seconds)`` blocks until something may have changed (e.g. a
    service notified systemd) or the seconds passed; ``alive`` returns a reason to stop
    early (e.g. a service process died), or None; ``explain`` describes the situation when
    the wait fails.
    """
    deadline = time.monotonic() + timeout
    while True:
        result = probe()
        if result is not None and result is not False:
            return result
        problem = alive()
        if problem is not None:
            raise AssertionError(f"while waiting for {what}: {problem}")
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not reached within {timeout:.0f} s\n{explain()}")
        news(POLL_SECONDS)


# -- processes ------------------------------------------------------------------------------


def process_state(pid: int) -> str:
    """The state letter of a live process (R, S, T for stopped, Z, ...), or "" when gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return ""
    return stat.rpartition(")")[2].split()[0]


def tcp_ports_to(pid: int, remote_port: int) -> set[int]:
    """Local ports of the process's TCP connections to ``remote_port`` (its database sessions).

    Sockets are matched by inode between ``/proc/PID/fd`` and ``/proc/net/tcp``.
    """
    inodes = set()
    fd_dir = Path(f"/proc/{pid}/fd")
    for fd in fd_dir.iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[len("socket:[") : -1])
    ports = set()
    for table in ("tcp", "tcp6"):
        path = Path(f"/proc/{pid}/net/{table}")
        if not path.exists():
            continue
        for line in path.read_text().splitlines()[1:]:
            fields = line.split()
            local, remote, inode = fields[1], fields[2], fields[9]
            if inode in inodes and int(remote.rsplit(":", 1)[1], 16) == remote_port:
                ports.add(int(local.rsplit(":", 1)[1], 16))
    return ports


def sessions_of(db: Db, ports: Iterable[int]) -> list[Any]:
    """pg_stat_activity rows of the backends serving these client ports."""
    return db.fetch(
        "SELECT client_port, state, wait_event, query FROM pg_stat_activity "
        "WHERE client_port = ANY($1)",
        sorted(ports),
    )


def settled(session: Any) -> bool:
    """Nothing this backend does can change the database before its (stopped) client runs.

    Idle, or idle in a transaction (which only the client can end), or waiting to read the
    rest of a statement the client had begun to send when it stopped (extended protocol:
    Parse sent, Bind/Execute/Sync not yet), or blocked sending the rows of a read to a
    client that does not read them (large results; the store's writes return a few rows at
    most, which the socket buffers absorb).
    """
    if session["state"] != "active" or session["wait_event"] == "ClientRead":
        return True
    query = str(session["query"]).lstrip().upper()
    return bool(session["wait_event"] == "ClientWrite" and query.startswith("SELECT"))


def notify_news(socks: Sequence[socket.socket], seconds: float) -> None:
    """Block until a service sends a notification (state, queue depth) or ``seconds`` pass."""
    select.select(list(socks), [], [], seconds)


def drain_notify(sock: socket.socket) -> int:
    """Read every datagram waiting on a notify socket, as systemd does; how many.

    Unread, they fill the socket's queue (``net.unix.max_dgram_qlen``, 10 by default) and
    the service's next notification then blocks its event loop.
    """
    sock.setblocking(False)
    drained = 0
    while True:
        try:
            sock.recv(65536)
        except BlockingIOError:
            return drained
        drained += 1


# -- logs -----------------------------------------------------------------------------------


def log_events(path: Path) -> list[dict[str, Any]]:
    """The JSON log lines a service wrote to its stderr (other lines are skipped)."""
    events = []
    for line in path.read_text(errors="replace").splitlines():
        try:
            event = json.loads(line)
        except ValueError:
            continue
        if isinstance(event, dict):
            events.append(event)
    return events


# -- rate windows ---------------------------------------------------------------------------


def max_in_window(times: Sequence[float], window: float) -> int:
    """The most requests any window of ``window`` seconds holds.

    The simulator (like Recall, i.e. DRF) allows a request when fewer than ``limit`` were
    accepted in the ``window`` seconds before it, so windows are half-open, (t - window, t].
    """
    ordered = sorted(times)
    best = 0
    for i, end in enumerate(ordered):
        start = bisect.bisect_right(ordered, end - window)
        best = max(best, i + 1 - start)
    return best


@dataclass(frozen=True)
class HeldLease:
    """A lease some process held at a moment the test froze or killed it."""

    job_id: str
    kind: str
    token: str
    lease_until: float
    offset: int | None
    total: int | None


def held_leases(db: Db, worker: str) -> dict[str, HeldLease]:
    rows = db.fetch(
        "SELECT id, kind, lease_token, lease_until, progress FROM recall_dl.jobs "
        "WHERE state = 'running' AND worker = $1",
        worker,
    )
    held = {}
    for row in rows:
        progress = json.loads(row["progress"]) if row["progress"] else {}
        held[row["id"]] = HeldLease(
            job_id=row["id"],
            kind=row["kind"],
            token=row["lease_token"],
            lease_until=float(row["lease_until"]),
            offset=progress.get("offset"),
            total=progress.get("total"),
        )
    return held


def mid_download(db: Db, worker: str) -> dict[str, HeldLease] | None:
    """The worker's leases, if it holds a part that is partly on disk (checkpointed, unfinished)."""
    held = held_leases(db, worker)
    for lease in held.values():
        if (
            lease.kind == "download_part"
            and lease.offset is not None
            and lease.total is not None
            and 0 < lease.offset < lease.total
        ):
            return held
    return None


def unfinished(db: Db, limit: int = 20) -> str:
    """Jobs not done yet, for a failure message."""
    rows = db.fetch(
        "SELECT id, state, attempts, worker, last_error, due, "
        "run_after - extract(epoch FROM clock_timestamp()) AS due_in "
        "FROM recall_dl.jobs WHERE state <> 'done' ORDER BY seq LIMIT $1",
        limit,
    )
    sessions = db.fetch(
        "SELECT pid, client_port, state, wait_event_type, wait_event, "
        "now() - xact_start AS xact_age, left(query, 60) AS query FROM pg_stat_activity "
        "WHERE datname = current_database() AND pid <> pg_backend_pid()"
    )
    counts = db.fetch(
        "SELECT kind, state, count(*) AS n FROM recall_dl.jobs GROUP BY kind, state ORDER BY 1, 2"
    )
    lines = [f"{r['kind']} {r['state']}: {r['n']}" for r in counts]
    lines += [
        f"{r['id']} {r['state']} attempts={r['attempts']} worker={r['worker']} "
        f"due={r['due']} due_in={r['due_in']:.1f} error={r['last_error']}"
        for r in rows
    ]
    lines += ["sessions:"] + [str(dict(r)) for r in sessions]
    return "\n".join(lines)
