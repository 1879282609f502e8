"""End-to-end throughput of the job store: parts per second through `recall-dl run` processes.

Runs the real service as 1, 2 or 4 worker processes sharing one PostgreSQL database (and,
for comparison, 1 process on SQLite) against the bundled simulator with tiny parts and rate
limits raised out of the way, so that what is measured is the per-part cost of the pipeline
and its store: claim, checkpoint, finish, the finalize check, the file's fsync and rename.

For each configuration: a fresh store and output folder, N processes started and waited for
(``/readyz``), every bot queued with `recall-dl add`, then the store polled until every part
is done. Reported: parts/s over the whole run (from `add` to the last part) and over the
middle 80% of the parts (steady state, no start-up or tail), and the CPU seconds spent by the
workers, the PostgreSQL server and this process (simulator and polling) per 1,000 parts.

    python bench/store/e2e_throughput.py [--bots 100] [--participants 4] [--parts 5]
        [--part-size 4096] [--runs sqlite:1,postgres:1,postgres:2,postgres:4] [--json FILE]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import asyncpg

from downloader.simulator import SimulatorConfig, SimulatorThread
from downloader.store.pgserver import TempPostgres

COMMAND = [sys.executable, "-m", "downloader.cli"]
TICKS = os.sysconf("SC_CLK_TCK")
POLL_SECONDS = 0.1
READY_TIMEOUT = 60.0
RUN_TIMEOUT = 900.0
UNLIMITED = "1000000"  # requests per window: the rate limits are not what is measured


@dataclass
class Result:
    backend: str
    processes: int
    parts: int
    seconds: float  # from `add` returning to the last part done
    parts_per_second: float
    steady_parts_per_second: float  # between 10% and 90% of the parts done
    cpu_workers: float  # CPU seconds, all worker processes together
    cpu_postgres: float
    cpu_bench: float  # this process: the simulator thread and the polling
    machine_busy: float  # share of all CPUs busy during the run (0..1)
    load_before: float
    load_after: float


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def process_cpu(pid: int) -> float:
    """utime + stime of a live process, in seconds (0 when it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / TICKS


def postgres_cpu() -> float:
    """CPU seconds of every process named postgres on the machine (the throwaway server)."""
    total = 0.0
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                comm = (entry / "comm").read_text().strip()
            except OSError:
                continue
            if comm == "postgres":
                total += process_cpu(int(entry.name))
    return total


def machine_ticks() -> tuple[int, int]:
    """(busy, total) jiffies over all CPUs since boot, from /proc/stat."""
    values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = values[3] + values[4]  # idle + iowait
    return sum(values) - idle, sum(values)


def self_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


class Progress:
    """Reads how many parts are done, straight from the store's database."""

    def __init__(self, state: str) -> None:
        self.state = state
        self._runner = asyncio.Runner()
        self._pg: Any = None
        self._sqlite: sqlite3.Connection | None = None
        if state.startswith("postgresql://"):
            self._pg = self._runner.run(asyncpg.connect(state))

    def done(self) -> int:
        sql = "SELECT count(*) FROM {}jobs WHERE kind = 'download_part' AND state = 'done'"
        if self._pg is not None:
            return int(self._runner.run(self._pg.fetchval(sql.format("recall_dl."))))
        if self._sqlite is None:
            if not Path(self.state).exists():
                return 0
            self._sqlite = sqlite3.connect(f"file:{self.state}?mode=ro", uri=True, timeout=30)
        row = self._sqlite.execute(sql.format("")).fetchone()
        return int(row[0])

    def close(self) -> None:
        if self._pg is not None:
            self._runner.run(self._pg.close())
        if self._sqlite is not None:
            self._sqlite.close()
        self._runner.close()


def service_env(sim: SimulatorThread, state: str, out: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RECALL_", "NOTIFY_"))}
    env.update(
        {
            "RECALL_API_URL": sim.api_url,
            "RECALL_API_KEY": sim.api_key,
            "RECALL_DL_STATE": state,
            "RECALL_DL_OUT": str(out),
            "RECALL_DL_LOG_FORMAT": "json",
            "RECALL_DL_LOG_LEVEL": "warning",
            "RECALL_DL_WEBHOOKS_ENABLED": "false",
            "RECALL_DL_SWEEP_ENABLED": "false",
            "RECALL_DL_LIST_RATE_LIMIT": UNLIMITED,
            "RECALL_DL_RETRIEVE_RATE_LIMIT": UNLIMITED,
            "RECALL_DL_POLL_INITIAL_SECONDS": "0.2",
            "RECALL_DL_POLL_MAX_SECONDS": "0.5",
        }
    )
    return env


def wait_until(what: str, condition: Callable[[], bool], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what}: not within {timeout:.0f} s")
        time.sleep(POLL_SECONDS)


def ready(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as answer:
            return int(answer.status) == 200
    except (urllib.error.URLError, OSError):
        return False


def run_once(
    sim: SimulatorThread, bots: list[str], total: int, backend: str, processes: int, state: str
) -> Result:
    with tempfile.TemporaryDirectory(prefix="recall-dl-e2e-") as tmp:
        root = Path(tmp)
        out = root / "out"
        if backend == "sqlite":
            state = str(root / "state.db")
        env = service_env(sim, state, out)
        ports = [free_port() for _ in range(processes)]
        procs: list[subprocess.Popen[bytes]] = []
        progress = Progress(state)
        try:
            for n, port in enumerate(ports):
                with (root / f"worker{n}.log").open("wb") as log:
                    procs.append(
                        subprocess.Popen(
                            [*COMMAND, "run"],
                            env={**env, "RECALL_DL_HTTP_LISTEN": f"127.0.0.1:{port}"},
                            stdout=subprocess.DEVNULL,
                            stderr=log,
                        )
                    )
            for port in ports:
                wait_until("a worker ready", lambda port=port: ready(port), READY_TIMEOUT)  # type: ignore[misc]
            load_before = os.getloadavg()[0]
            workers_before = sum(process_cpu(p.pid) for p in procs)  # start-up, imports
            pg_before, self_before = postgres_cpu(), self_cpu()
            busy_before, ticks_before = machine_ticks()
            subprocess.run(
                [*COMMAND, "add", *bots], env=env, check=True, capture_output=True, timeout=120
            )
            started = time.monotonic()
            samples: list[tuple[float, int]] = []
            deadline = started + RUN_TIMEOUT
            while True:
                done = progress.done()
                samples.append((time.monotonic(), done))
                if done >= total:
                    break
                for proc in procs:
                    if proc.poll() is not None:
                        raise RuntimeError(f"a worker exited ({proc.returncode}); see {root}")
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{done} of {total} parts after {RUN_TIMEOUT:.0f} s")
                time.sleep(POLL_SECONDS)
            finished = samples[-1][0]
            busy_after, ticks_after = machine_ticks()
            cpu_workers = sum(process_cpu(p.pid) for p in procs) - workers_before
            cpu_postgres = postgres_cpu() - pg_before if backend == "postgres" else 0.0
            cpu_bench = self_cpu() - self_before
            load_after = os.getloadavg()[0]
        finally:
            for proc in procs:
                if proc.poll() is None:
                    proc.send_signal(signal.SIGTERM)
            for proc in procs:
                try:
                    proc.wait(60)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
            progress.close()
    seconds = finished - started
    return Result(
        backend=backend,
        processes=processes,
        parts=total,
        seconds=round(seconds, 2),
        parts_per_second=round(total / seconds, 1),
        steady_parts_per_second=round(steady_rate(samples, total), 1),
        cpu_workers=round(cpu_workers, 1),
        cpu_postgres=round(cpu_postgres, 1),
        cpu_bench=round(cpu_bench, 1),
        machine_busy=round((busy_after - busy_before) / max(1, ticks_after - ticks_before), 2),
        load_before=round(load_before, 2),
        load_after=round(load_after, 2),
    )


def steady_rate(samples: list[tuple[float, int]], total: int) -> float:
    """Parts per second between the samples where 10% and 90% of the parts were done."""
    low = next(s for s in samples if s[1] >= total * 0.1)
    high = next(s for s in samples if s[1] >= total * 0.9)
    if high[0] <= low[0]:
        return float("nan")
    return (high[1] - low[1]) / (high[0] - low[0])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bots", type=int, default=100)
    parser.add_argument("--participants", type=int, default=4)
    parser.add_argument("--parts", type=int, default=5, help="parts per participant")
    parser.add_argument("--part-size", type=int, default=4096)
    parser.add_argument("--runs", default="sqlite:1,postgres:1,postgres:2,postgres:4")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    runs = [(b, int(n)) for b, _, n in (r.partition(":") for r in args.runs.split(","))]
    config = SimulatorConfig(
        bots=args.bots,
        participants_per_bot=args.participants,
        parts_per_participant=args.parts,
        part_size=args.part_size,
        seed=3,
        time_scale=0,
        list_limit_per_min=None,
        retrieve_limit_per_min=None,
    )
    print(
        f"machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}; "
        f"python {sys.version.split()[0]}",
        flush=True,
    )
    results: list[Result] = []
    with SimulatorThread(config) as sim, TempPostgres() as pg:
        bots = sim.bot_ids
        total = sum(len(sim.parts(r)) for b in bots for r in sim.recording_ids(b))
        print(f"{len(bots)} bots, {total} parts of {args.part_size} bytes", flush=True)
        for backend, processes in runs:
            state = pg.create_database() if backend == "postgres" else ""
            result = run_once(sim, bots, total, backend, processes, state)
            results.append(result)
            print(
                f"{backend:>8} x{processes}: {result.parts_per_second:7.1f} parts/s "
                f"(steady {result.steady_parts_per_second:7.1f}) in {result.seconds:6.1f} s; "
                f"CPU s per 1000 parts: workers "
                f"{1000 * result.cpu_workers / total:5.1f}, postgres "
                f"{1000 * result.cpu_postgres / total:5.1f}, sim+bench "
                f"{1000 * result.cpu_bench / total:5.1f}; machine busy "
                f"{result.machine_busy:.0%}; load {result.load_before} -> {result.load_after}",
                flush=True,
            )
    if args.json is not None:
        args.json.write_text(json.dumps([asdict(r) for r in results], indent=2) + "\n")


if __name__ == "__main__":
    main()
