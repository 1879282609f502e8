"""Soak `recall-dl run`: bots arrive continuously, faults are on, RSS is sampled over time.

    python -m bench.soak.soak --minutes 10 --work /tmp/recall-dl-soak

The service runs as a subprocess (as under systemd: NOTIFY_SOCKET, WATCHDOG_USEC) against the
bundled simulator in this process. Work reaches it through signed webhooks (when the
simulator sends them) and the periodic sweep. After the arrival phase the bench waits for the
queue to drain, stops the service with SIGTERM and checks that nothing was lost: every bot
that arrived has every part on disk, byte-identical to the simulator's, or a failed job with
its reason. Memory: RSS (``/proc/<pid>/status`` VmRSS) every ``--sample`` seconds; the
verdict is the least-squares slope after the warm-up, next to the spread of the samples.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import os
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from downloader.simulator import FaultConfig, Lifecycle, SimulatorConfig, SimulatorThread

SECRET = "whsec_" + base64.b64encode(b"recall-dl soak webhook secret!!").decode()
FAULTS = FaultConfig(
    api_5xx=0.02,
    api_429=0.01,
    manifest_5xx=0.02,
    media_5xx=0.02,
    truncate=0.02,
    stall=0.003,
    ignore_range=0.01,
    expire=0.01,
    etag_change=0.003,
    stall_seconds=4.0,
)


@dataclass
class Sample:
    t: float  # seconds since the service was ready
    rss_kib: int
    bots: int  # bots the simulator has created so far
    jobs_done: int
    jobs_pending: int
    jobs_failed: int


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def job_counts(state: Path) -> dict[str, int]:
    with sqlite3.connect(state, timeout=30) as conn:
        return {
            s: int(n) for s, n in conn.execute("SELECT state, count(*) FROM jobs GROUP BY state")
        }


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def slope_kib_per_min(samples: list[Sample]) -> float:
    xs = [s.t / 60 for s in samples]
    ys = [float(s.rss_kib) for s in samples]
    if len(xs) < 3:
        return 0.0
    return statistics.linear_regression(xs, ys).slope


def failed_bots(state: Path) -> dict[tuple[str, str], str]:
    with sqlite3.connect(state, timeout=30) as conn:
        return {
            (bot, kind): str(error)
            for bot, kind, error in conn.execute(
                "SELECT bot_id, kind, last_error FROM jobs WHERE state = 'failed'"
            )
        }


def all_accounted(sim: SimulatorThread, bots: list[str], out: Path, state: Path) -> bool:
    """Every recording of these bots is finalized, or its bot has a failed job."""
    failed = {bot for bot, _ in failed_bots(state)}
    return all(
        bot in failed or (out / bot / recording / "manifest.json").is_file()
        for bot in bots
        for recording in sim.recording_ids(bot)
    )


def check_nothing_lost(
    sim: SimulatorThread, bots: list[str], out: Path, state: Path
) -> dict[str, Any]:
    """Every arrived bot: all parts on disk and identical, or failed jobs that say why."""
    failed = {k: v for k, v in failed_bots(state).items() if k[0] in bots}
    with sqlite3.connect(state, timeout=30) as conn:
        marks = ",".join("?" * len(bots))
        unfinished = conn.execute(
            f"SELECT count(*) FROM jobs WHERE state IN ('pending', 'running')"
            f" AND bot_id IN ({marks})",
            bots,
        ).fetchone()[0]
    failed_bot_ids = {bot for bot, _ in failed}
    complete = parts = missing = 0
    for bot in bots:
        for recording in sim.recording_ids(bot):
            sidecar = out / bot / recording / "manifest.json"
            if not sidecar.is_file():
                if bot not in failed_bot_ids:
                    missing += 1
                continue
            entries = json.loads(sidecar.read_text())["parts"]
            assert {e["id"] for e in entries} == {p["id"] for p in sim.parts(recording)}
            for entry in entries:
                data = (out / bot / recording / entry["path"]).read_bytes()
                assert hashlib.sha256(data).hexdigest() == sim.part_sha256(entry["id"])
                parts += 1
            complete += 1
    return {
        "bots": len(bots),
        "recordings_complete": complete,
        "parts_verified": parts,
        "recordings_missing_without_reason": missing,
        "failed_jobs": len(failed),
        "failed_reasons": sorted({str(e)[:120] for e in failed.values()})[:10],
        "unfinished_jobs": unfinished,
    }


def wait_ready(notify: socket.socket, proc: subprocess.Popen[bytes]) -> None:
    notify.settimeout(1.0)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"service exited with {proc.returncode}")
        try:
            if b"READY=1" in notify.recv(65536):
                return
        except TimeoutError:
            continue
    raise SystemExit("service never became ready")


def drain_notify(notify: socket.socket) -> None:
    notify.setblocking(False)
    try:
        while True:
            notify.recv(65536)
    except BlockingIOError:
        pass


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10.0, help="arrival phase length")
    parser.add_argument("--arrival", type=float, default=3.0, help="seconds between new bots")
    parser.add_argument("--sample", type=float, default=10.0, help="seconds between RSS samples")
    parser.add_argument("--warmup", type=float, default=120.0, help="seconds ignored for the trend")
    parser.add_argument("--drain-timeout", type=float, default=600.0)
    parser.add_argument("--work", type=Path, default=Path("/tmp/recall-dl-soak"))
    parser.add_argument("--no-faults", action="store_true")
    args = parser.parse_args()

    work: Path = args.work
    if work.exists():
        subprocess.run(["rm", "-rf", str(work)], check=True)
    work.mkdir(parents=True)
    port = free_port()
    config = SimulatorConfig(
        bots=4,
        participants_per_bot=2,
        parts_per_participant=2,
        part_size=192 * 1024,
        seed=2026,
        time_scale=0.5,
        bot_lifecycle=Lifecycle(1, 4, 1, 1, 1),
        faults=FaultConfig() if args.no_faults else FAULTS,
        arrival_interval_seconds=args.arrival,
        webhook_url=f"http://127.0.0.1:{port}/webhooks/recall",
        webhook_secret=SECRET,
    )
    notify_path = work / "notify"
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(str(notify_path))
    samples: list[Sample] = []
    with SimulatorThread(config) as sim:
        env = {k: v for k, v in os.environ.items() if not k.startswith("RECALL_")}
        env.update(
            {
                "RECALL_API_URL": sim.api_url,
                "RECALL_API_KEY": sim.api_key,
                "RECALL_WEBHOOK_SECRET": SECRET,
                "RECALL_DL_OUT": str(work / "out"),
                "RECALL_DL_STATE": str(work / "state.db"),
                "RECALL_DL_HTTP_LISTEN": f"127.0.0.1:{port}",
                "RECALL_DL_LOG_FORMAT": "json",
                "RECALL_DL_POLL_INITIAL_SECONDS": "1",
                "RECALL_DL_POLL_MAX_SECONDS": "5",
                "RECALL_DL_READ_TIMEOUT_SECONDS": "2",
                "RECALL_DL_SWEEP_INTERVAL_SECONDS": "30",
                "RECALL_DL_SWEEP_OVERLAP_SECONDS": "60",
                "NOTIFY_SOCKET": str(notify_path),
                "WATCHDOG_USEC": "10000000",
            }
        )
        log = (work / "service.log").open("wb")
        proc = subprocess.Popen(
            [sys.executable, "-m", "downloader.cli", "run"], env=env, stderr=log
        )
        wait_ready(notify, proc)
        ready_at = time.monotonic()
        arrival_end = ready_at + args.minutes * 60
        print(f"ready; arrivals for {args.minutes} min, RSS every {args.sample} s", flush=True)

        def sample() -> Sample:
            counts = job_counts(work / "state.db")
            s = Sample(
                t=round(time.monotonic() - ready_at, 1),
                rss_kib=rss_kib(proc.pid),
                bots=len(sim.bot_ids),
                jobs_done=counts.get("done", 0),
                jobs_pending=counts.get("pending", 0) + counts.get("running", 0),
                jobs_failed=counts.get("failed", 0),
            )
            samples.append(s)
            print(json.dumps(asdict(s)), flush=True)
            return s

        next_sample = ready_at
        while time.monotonic() < arrival_end:
            if proc.poll() is not None:
                raise SystemExit(f"service died: {proc.returncode}")
            if time.monotonic() >= next_sample:
                sample()
                next_sample += args.sample
            drain_notify(notify)
            time.sleep(0.5)
        # The bots that arrived so far must all be accounted for; retries with back-off may
        # take minutes. (Arrivals go on meanwhile; later bots are not judged.)
        arrived = list(sim.bot_ids)
        drain_deadline = time.monotonic() + args.drain_timeout
        while time.monotonic() < drain_deadline:
            sample()
            if all_accounted(sim, arrived, work / "out", work / "state.db"):
                break
            time.sleep(args.sample)
        drained_after = round(time.monotonic() - arrival_end, 1)
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(120)
        log.close()
        result = check_nothing_lost(sim, arrived, work / "out", work / "state.db")
        stats = sim.stats()
    notify.close()
    after = [s for s in samples if s.t >= args.warmup and s.t <= args.minutes * 60]
    summary = {
        "minutes": args.minutes,
        "arrival_seconds": args.arrival,
        "faults": not args.no_faults,
        "exit_code": code,
        "rss_kib_first": samples[0].rss_kib,
        "rss_kib_after_warmup_min": min(s.rss_kib for s in after) if after else None,
        "rss_kib_after_warmup_max": max(s.rss_kib for s in after) if after else None,
        "rss_kib_last": samples[-1].rss_kib,
        "rss_slope_kib_per_min_after_warmup": round(slope_kib_per_min(after), 1),
        "samples": len(samples),
        "drain_seconds_after_arrivals": drained_after,
        "faults_injected": stats.get("faults_injected"),
        "webhooks": stats.get("webhooks"),
        "media_bytes_served": stats["media"]["bytes_served_total"],
        **result,
    }
    (work / "samples.json").write_text(json.dumps([asdict(s) for s in samples], indent=1))
    (work / "summary.json").write_text(json.dumps(summary, indent=1))
    print(json.dumps(summary, indent=1))
    lost = result["recordings_missing_without_reason"] or result["unfinished_jobs"]
    return 1 if lost or code != 0 else 0


if __name__ == "__main__":
    sys.exit(main())
