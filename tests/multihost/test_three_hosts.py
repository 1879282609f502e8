"""Three `recall-dl run` processes, one PostgreSQL database, one simulated workspace, faults on.

The issue's multi-host acceptance test, with real processes, sockets, signals and database:

* ~300 small parts (8 bots x 4 participants x 9+ parts of 48 KiB), media throttled to
  64 KiB/s per connection so that each download takes most of a second and a signal lands
  mid-transfer; faults: truncated bodies, media 503s, expired URLs, API 5xx and two 429s.
* The bots are queued with `recall-dl add` against the database; no process is told about
  another.
* One process is SIGKILLed while it is writing a part (checkpointed, unfinished). Another is
  SIGSTOPped while writing a part and kept stopped until the other hosts have reclaimed
  every lease it held and 1.5 leases have passed; then SIGCONTed.
* At the end: every part is done and byte-identical to the simulator's content, every
  recording has its sidecar naming the host that wrote each part, the simulator never saw
  two concurrent downloads of one part, no job was finished under a lease the test saw taken
  away (read from the store's tokens and times), and the requests of all processes together
  stayed within the workspace's limits in every window.

Every wait polls a real condition (the database, /proc, the simulator) with a deadline.

Short settings keep it near a minute on 2 cores; they are the only departures from
production values:

* leases of 4 s (production 60 s; heartbeats every lease/3);
* a workspace allowing 4 list and 6 retrieve requests per 2 s window (Recall: 60 and 300
  per 60 s), and the hosts configured with the same limits: small enough that the hosts'
  bursts exceed them, so the shared budget must hold them back, and short enough that no
  API job waits a whole lease for its slot (API jobs renew no lease while they wait). The
  budget records a request when it takes the slot and the workspace counts it on arrival;
  the limiter's margin (1% of the window, at least 200 ms) covers the delay between the
  two, which a process's first requests on a loaded 2-core machine stretch to ~100 ms;
* Retry-After 1 s on the two injected 429s.

The rate checks read both sides: the requests the simulator received, by arrival time; and
every slot the hosts took from the shared budget (database clock), logged by a trigger the
test adds to the budget's table.

The output folder is shared by the three processes, as hosts sharing a network filesystem
would. This is the layout in which the partial-file lock keeps a frozen holder and its
successor from writing one file, and so from downloading one part, at the same time; with
per-host folders a host frozen mid-body could still hold a connection streaming a part
while its successor fetches the part again (see docs/MULTIHOST.md).
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from downloader.simulator import FaultConfig, SimulatorConfig, SimulatorThread
from downloader.store.pgserver import TempPostgres
from tests.multihost.cluster import (
    LEASE_LOST_EVENTS,
    Db,
    HeldLease,
    drain_notify,
    held_leases,
    log_events,
    max_in_window,
    mid_download,
    notify_news,
    process_state,
    sessions_of,
    settled,
    tcp_ports_to,
    unfinished,
    wait_for,
    worker_id,
)
from tests.service.harness import COMMAND, ServiceRun

pytestmark = [pytest.mark.postgres, pytest.mark.slow, pytest.mark.timeout(240)]

BOTS = 8
PARTICIPANTS = 4
PARTS_PER_PARTICIPANT = 9
PART_SIZE = 48 * 1024
THROTTLE = 64 * 1024  # bytes per second per media connection
LEASE_SECONDS = 4.0
RATE_WINDOW = 2.0  # seconds, in the simulated workspace and the hosts' settings alike
LIMITS = {"list": 4, "retrieve": 6}  # requests per window
FAULTS = FaultConfig(
    truncate=0.05,
    media_5xx=0.04,
    expire=0.03,
    api_5xx=0.02,
    api_429=2,  # exactly two 429s, each pausing its class for every host
    retry_after_seconds=1,
)
PARTS_BEFORE_KILL = 3  # the killed host has finished some parts of its own
DEADLINE_SECONDS = 150.0  # whole scenario; it normally takes about a minute


@pytest.fixture
def sim() -> Iterator[SimulatorThread]:
    config = SimulatorConfig(
        bots=BOTS,
        participants_per_bot=PARTICIPANTS,
        parts_per_participant=PARTS_PER_PARTICIPANT,
        part_size=PART_SIZE,
        seed=7,
        time_scale=0,  # every bot has already finished its call
        throttle_bytes_per_sec=THROTTLE,
        faults=FAULTS,
        list_limit_per_min=LIMITS["list"],
        retrieve_limit_per_min=LIMITS["retrieve"],
        rate_window_seconds=RATE_WINDOW,
    )
    with SimulatorThread(config) as running:
        yield running


def host_env(pg: str, out: Path) -> dict[str, str]:
    """The settings every host gets (besides its own HTTP port, from ServiceRun)."""
    return {
        "RECALL_DL_STATE": pg,
        "RECALL_DL_OUT": str(out),
        "RECALL_DL_LEASE_SECONDS": str(LEASE_SECONDS),
        "RECALL_DL_CONCURRENCY": "4",
        "RECALL_DL_API_CONCURRENCY": "2",
        "RECALL_DL_CHECKPOINT_BYTES": "16k",
        "RECALL_DL_WRITE_BUFFER_BYTES": "16k",
        "RECALL_DL_LIST_RATE_LIMIT": str(LIMITS["list"]),
        "RECALL_DL_RETRIEVE_RATE_LIMIT": str(LIMITS["retrieve"]),
        "RECALL_DL_RATE_WINDOW_SECONDS": str(RATE_WINDOW),
        "RECALL_DL_GRACE_PERIOD_SECONDS": "10",
    }


def recall_dl(sim: SimulatorThread, env: dict[str, str], *args: str) -> str:
    """Run a one-shot `recall-dl` command against the shared store; its stdout."""
    full = {k: v for k, v in os.environ.items() if not k.startswith(("RECALL_", "NOTIFY_"))}
    full.update(env, RECALL_API_URL=sim.api_url, RECALL_API_KEY=sim.api_key)
    full["RECALL_DL_LOG_FORMAT"] = "json"
    done = subprocess.run(
        [*COMMAND, *args], env=full, capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, f"recall-dl {' '.join(args)}: {done.stderr}"
    return done.stdout


@dataclass
class Cluster:
    sim: SimulatorThread
    db: Db
    hosts: list[ServiceRun]
    env: dict[str, str]
    out: Path
    pg_port: int
    started: float = field(default_factory=time.monotonic)

    @property
    def victim(self) -> ServiceRun:  # SIGKILLed
        return self.hosts[0]

    @property
    def sleeper(self) -> ServiceRun:  # SIGSTOPped, then SIGCONTed
        return self.hosts[1]

    @property
    def survivor(self) -> ServiceRun:
        return self.hosts[2]

    def pid(self, host: ServiceRun) -> int:
        assert host.proc is not None
        return host.proc.pid

    def worker(self, host: ServiceRun) -> str:
        return worker_id(self.pid(host))

    @property
    def workers(self) -> list[str]:
        return [self.worker(h) for h in self.hosts]

    def problem(self) -> str | None:
        """Why waiting is pointless: a host that should be running has exited.

        Called at every poll; it also reads the hosts' notify sockets, as systemd would.
        """
        for host in self.hosts:
            assert host.proc is not None
            if host.notify is not None:
                drain_notify(host.notify.sock)
            if host is not self.victim and host.proc.poll() is not None:
                return f"{host.root.name} exited ({host.proc.returncode}):\n{host.log_tail()}"
        return None

    def news(self, seconds: float) -> None:
        notify_news([h.notify.sock for h in self.hosts if h.notify is not None], seconds)

    def wait(self, what: str, probe: Any, timeout: float) -> Any:
        return wait_for(
            what,
            probe,
            timeout=timeout,
            news=self.news,
            alive=self.problem,
            explain=lambda: unfinished(self.db),
        )

    def left(self) -> float:
        return DEADLINE_SECONDS - (time.monotonic() - self.started)

    def parts_done_by(self, worker: str) -> int:
        return int(
            self.db.value(
                "SELECT count(*) FROM recall_dl.jobs WHERE kind = 'download_part' "
                "AND state = 'done' AND result->>'host' = $1",
                worker,
            )
        )


def test_three_hosts_share_one_database_through_kill_and_freeze(
    tmp_path: Path, pg_server: TempPostgres, pg_url: str, sim: SimulatorThread
) -> None:
    out = tmp_path / "shared-out"
    env = host_env(pg_url, out)
    hosts = [ServiceRun(root=tmp_path / f"host{n}", sim=sim, env_extra=env) for n in (1, 2, 3)]
    cluster = Cluster(sim, Db(pg_url), hosts, env, out, pg_server.port)
    try:
        run_scenario(cluster)
    finally:
        for host in hosts:
            if host.proc is not None and process_state(host.proc.pid) == "T":
                os.kill(host.proc.pid, signal.SIGCONT)
            host.kill()
        cluster.db.close()


def run_scenario(c: Cluster) -> None:
    # Three hosts start at once (the schema is migrated once, under the advisory lock).
    for host in c.hosts:
        host.start()
    for host in c.hosts:
        host.wait_ready()

    log_rate_slots(c.db)
    # Work arrives through the shared store only.
    bots = c.sim.bot_ids
    recordings = [r for bot in bots for r in c.sim.recording_ids(bot)]
    total_parts = sum(len(c.sim.parts(r)) for r in recordings)
    assert len(bots) == BOTS and total_parts >= BOTS * PARTICIPANTS * PARTS_PER_PARTICIPANT
    assert f"queued {BOTS} new bot(s)" in recall_dl(c.sim, c.env, "add", *bots)

    killed, killed_at = kill_one_mid_download(c)
    frozen, stopped_at, resumed_at = freeze_one_past_its_lease(c, total_parts)

    c.wait(
        "every part and recording done",
        lambda: everything_done(c.db, len(recordings), total_parts),
        timeout=c.left(),
    )
    status = json.loads(recall_dl(c.sim, c.env, "status", "--json"))
    assert c.problem() is None  # (and the notify sockets are read before the hosts stop)
    for host in (c.sleeper, c.survivor):
        assert host.stop(timeout=30) == 0, host.log_tail()
    elapsed = time.monotonic() - c.started

    # `status` shows the finished queue and the three workers.
    assert status["totals"] == {"done": BOTS + 3 * len(recordings) + total_parts}
    assert status["failures"] == []
    assert {w["worker"] for w in status["workers"]} == set(c.workers)

    results = check_files(c, bots, total_parts)
    stats = c.sim.stats()
    # Kept beside the hosts' logs, for reading a failure.
    (c.out.parent / "simulator-stats.json").write_text(json.dumps(stats))
    (c.out.parent / "simulator-requests.json").write_text(json.dumps(c.sim.request_log()))
    check_one_download_per_part(c, stats, frozen)
    check_stale_leases(c, killed, killed_at, frozen, resumed_at, results)
    arrivals, slots = check_rate_limits(c.db, stats)
    locked_out = sum(
        "another process is still writing" in str(e.get("error"))
        for host in (c.sleeper, c.survivor)
        for e in log_events(host.log_path)
    )
    print(
        f"\nmultihost: {total_parts} parts in {elapsed:.1f} s; parts per host "
        f"{[sum(r['host'] == w for r in results.values()) for w in c.workers]}; "
        f"stopped {resumed_at - stopped_at:.1f} s holding {len(frozen)} lease(s), "
        f"{locked_out} attempt(s) refused by a partial-file lock; "
        f"busiest windows (limits {LIMITS}): arrivals {arrivals}, slots {slots}; "
        f"faults {stats['faults_injected']}",
        file=sys.stderr,
    )


def kill_one_mid_download(c: Cluster) -> tuple[dict[str, HeldLease], float]:
    """SIGKILL the first host while it writes a part, after it has finished a few."""
    victim = c.worker(c.victim)
    held = c.wait(
        "the first host writing a part, with parts of its own done",
        lambda: c.parts_done_by(victim) >= PARTS_BEFORE_KILL and mid_download(c.db, victim),
        timeout=min(45.0, c.left()),
    )
    assert c.sim.stats()["media"]["concurrent_downloads"] > 0
    c.victim.kill()
    assert c.victim.proc is not None and c.victim.proc.returncode == -signal.SIGKILL
    killed_at = c.db.now()
    # The dead process was on the others' host: they take its jobs back without waiting
    # for the leases to run out.
    c.wait("the killed host's jobs reclaimed", lambda: not held_leases(c.db, victim), timeout=15)
    return held, killed_at


def freeze_one_past_its_lease(
    c: Cluster, total_parts: int
) -> tuple[dict[str, HeldLease], float, float]:
    """SIGSTOP the second host while it writes a part; SIGCONT once its leases are gone."""
    sleeper, pid = c.worker(c.sleeper), c.pid(c.sleeper)
    c.wait("the second host writing a part", lambda: mid_download(c.db, sleeper), timeout=30)
    os.kill(pid, signal.SIGSTOP)
    wait_for("the process stopped", lambda: process_state(pid) == "T", timeout=5, news=c.news)
    db_sessions = tcp_ports_to(pid, c.pg_port)
    assert db_sessions, "the service holds no connection to the database?"
    # Statements it had sent before the signal run to completion; after that nothing it
    # holds can change except by the other hosts.
    wait_for(
        "the stopped host's statements to finish",
        lambda: all(settled(s) for s in sessions_of(c.db, db_sessions)),
        timeout=10,
        news=c.news,
        explain=lambda: "\n".join(str(dict(s)) for s in sessions_of(c.db, db_sessions)),
    )
    frozen = held_leases(c.db, sleeper)
    stopped_at = c.db.now()
    assert any(h.kind == "download_part" for h in frozen.values()), frozen
    done = c.db.value(
        "SELECT count(*) FROM recall_dl.jobs WHERE kind = 'download_part' AND state = 'done'"
    )
    assert done < total_parts // 2, "too late to see the resumed host work again"
    c.wait(
        "the stopped host's leases expired and taken back by the others",
        lambda: (
            all(lease_gone(c.db, lease) for lease in frozen.values())
            and c.db.now() - stopped_at > LEASE_SECONDS * 1.5
        ),
        timeout=LEASE_SECONDS * 5,
    )
    resumed_at = c.db.now()
    os.kill(pid, signal.SIGCONT)
    return frozen, stopped_at, resumed_at


def lease_gone(db: Db, lease: HeldLease) -> bool:
    """The job is no longer held under this lease (reclaimed, or finished before the stop)."""
    row = db.fetch("SELECT state, lease_token FROM recall_dl.jobs WHERE id = $1", lease.job_id)
    return bool(row[0]["lease_token"] != lease.token or row[0]["state"] != "running")


def everything_done(db: Db, recordings: int, total_parts: int) -> bool:
    rows = db.fetch("SELECT kind, state, count(*) AS n FROM recall_dl.jobs GROUP BY kind, state")
    counts: dict[tuple[str, str], int] = {(r["kind"], r["state"]): int(r["n"]) for r in rows}
    busy = sum(n for (_, state), n in counts.items() if state != "done")
    return (
        busy == 0
        and counts.get(("download_part", "done"), 0) == total_parts
        and counts.get(("finalize_recording", "done"), 0) == recordings
    )


def check_files(c: Cluster, bots: list[str], total_parts: int) -> dict[str, dict[str, Any]]:
    """Every part on disk, byte-identical, listed in its sidecar with the host that wrote it."""
    rows = c.db.fetch(
        "SELECT key, result FROM recall_dl.jobs WHERE kind = 'download_part' AND state = 'done'"
    )
    results: dict[str, dict[str, Any]] = {r["key"]: json.loads(r["result"]) for r in rows}
    assert len(results) == total_parts
    checked = 0
    for bot in bots:
        for recording in c.sim.recording_ids(bot):
            folder = c.out / bot / recording
            sidecar = json.loads((folder / "manifest.json").read_text())
            assert {p["id"] for p in sidecar["parts"]} == {p["id"] for p in c.sim.parts(recording)}
            for entry in sidecar["parts"]:
                want = c.sim.part_sha256(entry["id"])
                data = (folder / entry["path"]).read_bytes()
                assert len(data) == PART_SIZE
                assert hashlib.sha256(data).hexdigest() == want, entry
                assert entry["sha256"] == want
                assert entry["host"] == results[entry["id"]]["host"]
                checked += 1
    assert checked == total_parts
    assert not list(c.out.rglob("*.part")), "a partial file was left behind"
    # All three hosts wrote parts (the killed one before it died); nobody else did.
    assert {r["host"] for r in results.values()} == set(c.workers)
    return results


def check_one_download_per_part(
    c: Cluster, stats: dict[str, Any], frozen: dict[str, HeldLease]
) -> None:
    """The simulator never streamed one part to two clients at once, faults or not."""
    per_part = stats["media"]["max_concurrent_per_part"]
    assert per_part and max(per_part.values()) == 1, {k: v for k, v in per_part.items() if v > 1}
    assert stats["violations"] == dict.fromkeys(stats["violations"], 0), stats["violations"]
    injected = stats["faults_injected"]
    for fault in ("truncate", "media_5xx", "expire", "api_429"):
        assert injected.get(fault, 0) > 0, f"fault {fault} never fired: {injected}"
    # Not vacuous: parts were requested more than once (resumed after faults, taken over),
    # among them every part the frozen host was still receiving when it was stopped.
    media_gets: dict[str, int] = {}
    for entry in c.sim.request_log():
        if entry["host"] == "media" and entry["method"] == "GET":
            part_id = entry["path"].rstrip("/").split("/")[-2]
            media_gets[part_id] = media_gets.get(part_id, 0) + 1
    assert max(media_gets.values()) >= 2, media_gets
    for lease in frozen.values():
        if lease.kind == "download_part" and (lease.offset or 0) < (lease.total or 1):
            assert media_gets.get(lease.job_id.partition(":")[2], 0) >= 2, lease


def check_stale_leases(
    c: Cluster,
    killed: dict[str, HeldLease],
    killed_at: float,
    frozen: dict[str, HeldLease],
    resumed_at: float,
    results: dict[str, dict[str, Any]],
) -> None:
    """No job was finished under a lease the test saw taken away.

    The store keeps the token of the attempt that finished a job. A job finished under a
    token taken from a killed or frozen host must have been finished while that lease was
    still valid, i.e. by a statement sent before the signal.
    """
    final = {
        r["id"]: r
        for r in c.db.fetch(
            "SELECT id, kind, state, lease_token, updated_at, result FROM recall_dl.jobs "
            "WHERE id = ANY($1)",
            sorted({*killed, *frozen}),
        )
    }
    for lease in [*killed.values(), *frozen.values()]:
        job = final[lease.job_id]
        assert job["state"] == "done", (lease, dict(job))
        if job["lease_token"] == lease.token:
            assert float(job["updated_at"]) <= lease.lease_until, (lease, dict(job))
    victim, sleeper = c.worker(c.victim), c.worker(c.sleeper)
    # What the killed host was doing was finished by another host, under a new lease.
    resumed = [
        lease for lease in killed.values() if float(final[lease.job_id]["updated_at"]) > killed_at
    ]
    assert any(lease.kind == "download_part" for lease in resumed), killed
    for lease in resumed:
        assert final[lease.job_id]["lease_token"] != lease.token
        if lease.kind == "download_part":
            assert results[lease.job_id.partition(":")[2]]["host"] != victim
    reclaimed_dead = [
        e
        for host in (c.sleeper, c.survivor)
        for e in log_events(host.log_path)
        if e.get("event") == "dead_holder_reclaimed" and e.get("holder") == victim
    ]
    assert reclaimed_dead, "no host reported taking back the killed host's jobs"
    # The frozen host, once resumed, was refused every write under its old leases ...
    refused = {
        e.get("job_id")
        for e in log_events(c.sleeper.log_path)
        if e.get("event") in LEASE_LOST_EVENTS
    }
    for lease in frozen.values():
        if final[lease.job_id]["lease_token"] != lease.token:
            assert lease.job_id in refused, (lease, sorted(filter(None, refused)))
    # ... and then went back to work under new leases.
    after = c.db.value(
        "SELECT count(*) FROM recall_dl.jobs WHERE kind = 'download_part' AND state = 'done' "
        "AND result->>'host' = $1 AND updated_at > $2",
        sleeper,
        resumed_at,
    )
    assert after > 0, "the resumed host finished nothing after SIGCONT"


RATE_LOG = """
CREATE TABLE public.rate_slots (cls text NOT NULL, at float8 NOT NULL);
CREATE FUNCTION public.log_rate_slot() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO public.rate_slots (cls, at) VALUES (NEW.cls, NEW.at);
    RETURN NEW;
END $$;
CREATE TRIGGER log_rate_slot AFTER INSERT ON recall_dl.rate_requests
    FOR EACH ROW EXECUTE FUNCTION public.log_rate_slot();
"""


def log_rate_slots(db: Db) -> None:
    """Keep every slot taken from the shared budget (the budget itself forgets old ones)."""
    db.execute(RATE_LOG)


def check_rate_limits(db: Db, stats: dict[str, Any]) -> tuple[dict[str, int], dict[str, int]]:
    """The hosts together never sent more than the workspace allows in any window.

    On arrival, as the workspace counts: every API request the simulator received, including
    those answered 429 or 5xx (each took a slot too). At the source: every slot the hosts
    took from the shared budget (database clock).
    """
    slots: dict[str, list[float]] = {cls: [] for cls in LIMITS}
    for row in db.fetch("SELECT cls, at FROM public.rate_slots"):
        slots[row["cls"]].append(float(row["at"]))
    by_arrival: dict[str, int] = {}
    by_slot: dict[str, int] = {}
    for cls, limit in LIMITS.items():
        received = stats["api_request_times"][cls]
        # Every request took a slot; a slot can go unused (its host was killed before
        # sending, or the request failed to connect).
        assert len(received) <= len(slots[cls]), (cls, len(received), len(slots[cls]))
        by_arrival[cls] = max_in_window(received, RATE_WINDOW)
        by_slot[cls] = max_in_window(slots[cls], RATE_WINDOW)
        assert by_arrival[cls] <= limit, (cls, by_arrival[cls], limit)
        assert by_slot[cls] <= limit, (cls, by_slot[cls], limit)
    # Not vacuous: the hosts' demand used the whole budget, so it did hold them back.
    assert by_slot == LIMITS, by_slot
    return by_arrival, by_slot
