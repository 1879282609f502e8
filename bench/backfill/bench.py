"""Backfill of 1,000 / 10,000 / 50,000 simulated recordings: wall time, store ops/s, peak RSS.

    python -m bench.backfill.bench [--sizes 1000,10000,50000] [--dir /dev/shm]

The simulator runs in this process (a thread); the command runs as a subprocess
(``bench/backfill/child.py``) so its peak RSS is measured alone (``wait4``). Tiny parts
(1 participant, 2 parts of 1 KiB per recording), raised rate limits (a 1-second "minute"),
state and output on tmpfs by default: this measures recall-dl's own per-recording cost, not
the disk or the network. Writes ``bench/backfill/RESULTS.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from downloader.simulator import SimulatorConfig, SimulatorThread

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
LIMIT = 100_000  # per rate window, both classes: far above what the command asks for


@dataclass
class Row:
    recordings: int
    seconds: float
    store_ops: int
    peak_rss_mib: float
    done: int

    @property
    def per_thousand(self) -> float:
        return self.seconds / self.recordings * 1000

    @property
    def ops_per_second(self) -> float:
        return self.store_ops / self.seconds


def run_size(size: int, base: Path) -> Row:
    config = SimulatorConfig(
        bots=size,
        participants_per_bot=1,
        parts_per_participant=1,
        part_size=1024,
        page_size=100,
        created_at_spread_days=90,
        time_scale=0,
        list_limit_per_min=LIMIT,
        retrieve_limit_per_min=LIMIT,
        rate_window_seconds=1.0,
        request_log_limit=1000,
        seed=size,
    )
    work = Path(tempfile.mkdtemp(prefix=f"backfill-{size}-", dir=base))
    stats_file = work / "stats.json"
    try:
        with SimulatorThread(config) as sim:
            env = {k: v for k, v in os.environ.items() if not k.startswith("RECALL_")}
            env.update(
                RECALL_API_URL=sim.api_url,
                RECALL_API_KEY=sim.api_key,
                RECALL_DL_OUT=str(work / "out"),
                RECALL_DL_STATE=str(work / "state.db"),
                RECALL_DL_LOG_FORMAT="json",
                RECALL_DL_LOG_LEVEL="warning",
                RECALL_DL_RATE_WINDOW_SECONDS="1",
                RECALL_DL_LIST_RATE_LIMIT=str(LIMIT),
                RECALL_DL_RETRIEVE_RATE_LIMIT=str(LIMIT),
                RECALL_DL_CONCURRENCY="16",
                RECALL_DL_API_CONCURRENCY="8",
                RECALL_DL_BENCH_STATS=str(stats_file),
                PYTHONPATH=str(ROOT),
                RECALL_DL_BENCH_PROFILE=os.environ.get("RECALL_DL_BENCH_PROFILE", ""),
            )
            command = [sys.executable, str(HERE / "child.py"), "backfill", "--since", "2000-01-01"]
            started = time.perf_counter()
            proc = subprocess.Popen(
                command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
            )
            stdout, stderr = proc.communicate()
            seconds = time.perf_counter() - started
            if proc.returncode != 0:
                raise SystemExit(f"backfill of {size} failed ({proc.returncode}): {stderr[-2000:]}")
            stats = json.loads(stats_file.read_text())
            rss = stats["peak_rss_kib"] / 1024
            print(f"  child CPU {stats['cpu_seconds']:.1f} s; ops {stats['ops']}", flush=True)
            served = sim.stats()
            assert sum(served["served_429"].values()) == 0, served["served_429"]
        done = int(stdout.split(": ")[1].split(" recording")[0]) if ": " in stdout else 0
        return Row(size, seconds, sum(stats["ops"].values()), rss, done)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def write_results(rows: list[Row], path: Path) -> None:
    base = rows[0].per_thousand
    lines = [
        "# Backfill benchmark",
        "",
        f"`python -m bench.backfill.bench` on {platform.node() or 'this host'} "
        f"({os.cpu_count()} CPUs, Python {platform.python_version()}), "
        f"{time.strftime('%Y-%m-%d')}.",
        "",
        "Simulator in-process (thread), `recall-dl backfill` as a subprocess; one participant",
        "per recording with two 1 KiB parts (webcam + the host's screenshare); list/retrieve",
        "limits raised to 100,000 per 1 s window; page size 100; state (SQLite) and output",
        "on tmpfs; concurrency 16, API 8.",
        "Zero 429s in every run (asserted).",
        "",
        "| recordings | wall time | time per 1,000 | vs 1,000 | store ops | store ops/s "
        "| peak RSS |",
        "|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        lines.append(
            f"| {row.recordings:,} | {row.seconds:.1f} s | {row.per_thousand:.2f} s "
            f"| {row.per_thousand / base:.2f}x | {row.store_ops:,} | {row.ops_per_second:,.0f} "
            f"| {row.peak_rss_mib:.0f} MiB |"
        )
    lines += [
        "",
        "Targets: peak RSS under 150 MB at 50,000; time per 1,000 at 50,000 within 1.5x of",
        "that at 1,000.",
        "",
    ]
    path.write_text("\n".join(lines))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", default="1000,10000,50000")
    parser.add_argument("--dir", default="/dev/shm" if Path("/dev/shm").is_dir() else None)
    parser.add_argument("--results", default=str(HERE / "RESULTS.md"))
    args = parser.parse_args()
    base = Path(args.dir) if args.dir else Path(tempfile.gettempdir())
    rows = []
    for size in (int(s) for s in args.sizes.split(",")):
        row = run_size(size, base)
        print(
            f"{row.recordings:>6} recordings: {row.seconds:7.1f} s, "
            f"{row.per_thousand:.2f} s/1000, {row.ops_per_second:,.0f} store ops/s, "
            f"peak RSS {row.peak_rss_mib:.0f} MiB, done {row.done}",
            flush=True,
        )
        rows.append(row)
    write_results(rows, Path(args.results))


if __name__ == "__main__":
    main()
