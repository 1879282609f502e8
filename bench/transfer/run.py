"""Throughput, CPU time and peak RSS of our engine vs ``curl --parallel`` and ``aria2c -j8``.

``python -m bench.transfer.run [--runs 3] [--workdir /var/tmp/recall-dl-bench]``

Every tool downloads the same files from the same nginx (Debian package, started here on a
free 127.0.0.1 port with its own config) into a fresh directory on the same disk; runs are
interleaved (curl, aria2c, ours, curl, ...) and the page cache is written back (``sync``,
untimed) between runs. CPU and peak RSS come from ``wait4`` on the tool's process.
Results (medians, and ratios from this same invocation) go to ``bench/transfer/RESULTS.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import socket
import statistics
import struct
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
MB = 1_000_000
TOOLS = ("curl", "aria2c", "ours")
# not a downloader: the same files copied with our durability discipline, no network, no
# hash (``durable.py``), to show what durability alone allows on this disk
REFERENCES = ("durable",)
BASELINE: list[Path] = []  # --baseline: a checkout whose engine runs as the tool "before"
PEERS = ("curl", "aria2c")
# (scenario, peer) -> (target as written in the issue, test on (throughput ratio, CPU ratio))
TARGETS: dict[tuple[str, str], tuple[str, Callable[[float, float], bool]]] = {
    ("large", "curl"): ("throughput >= 1.0, CPU <= 1.2", lambda t, c: t >= 1.0 and c <= 1.2),
    ("large", "aria2c"): ("throughput >= 1.6", lambda t, c: t >= 1.6),
    ("single", "curl"): ("throughput >= 0.8", lambda t, c: t >= 0.8),
    ("small", "curl"): ("files/s >= 0.8", lambda t, c: t >= 0.8),
    ("small", "aria2c"): ("files/s >= 1.25", lambda t, c: t >= 1.25),
}
PACKAGES = {"nginx": "nginx", "aria2c": "aria2", "curl": "curl", "time": "time"}
NGINX = "/usr/sbin/nginx"
TIME = "/usr/bin/time"
BLOCK = 8 << 20


@dataclass(frozen=True)
class Scenario:
    name: str
    count: int
    size: int
    concurrency: int


SCENARIOS = (
    Scenario("large", 16, 128 * MB, 8),
    Scenario("single", 1, 400 * MB, 1),
    Scenario("small", 2000, 200_000, 8),
)


@dataclass(frozen=True)
class Sample:
    seconds: float
    cpu: float
    rss_mib: float
    sync_after: float = 0.0  # untimed ``sync`` right after the run: dirty data left behind
    inner: float | None = None  # ours only: seconds inside the process, after imports
    load: float = 0.0  # 1-minute load average when the run ended (other work on the host)


# --- set-up -----------------------------------------------------------------------------


def ensure_tools() -> None:
    missing = [
        pkg
        for exe, pkg in PACKAGES.items()
        if shutil.which(exe) is None and not (exe == "nginx" and Path(NGINX).exists())
    ]
    if missing:
        subprocess.run(["apt-get", "update", "-qq"], check=True)
        subprocess.run(["apt-get", "install", "-y", "-qq", *missing], check=True)


def mp4_file(path: Path, size: int, index: int, block: bytes) -> None:
    """``ftyp`` | ``mdat`` (pseudo-random, unique prefix) | ``moov``: passes our MP4 check."""
    ftyp = struct.pack(">I4s4sI4s4s", 24, b"ftyp", b"isom", 0x200, b"isom", b"mp41")
    moov = struct.pack(">I4s", 16, b"moov") + struct.pack(">I4s", 8, b"free")
    mdat_payload = size - len(ftyp) - len(moov) - 8
    with path.open("wb") as out:
        out.write(ftyp + struct.pack(">I4s", mdat_payload + 8, b"mdat"))
        unique = f"{index:016d}".encode() * 4
        out.write(unique)
        left = mdat_payload - len(unique)
        offset = (index * 4099) % len(block)
        while left:
            piece = block[offset : offset + min(left, len(block) - offset)]
            out.write(piece)
            left -= len(piece)
            offset = 0
        out.write(moov)


def make_files(files: Path) -> None:
    block = os.urandom(BLOCK)
    for scenario in SCENARIOS:
        folder = files / scenario.name
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(scenario.count):
            path = folder / f"f{i:05d}.mp4"
            if not path.exists() or path.stat().st_size != scenario.size:
                mp4_file(path, scenario.size, i, block)
    os.sync()
    for path in files.rglob("*.mp4"):  # warm the page cache: every tool reads from RAM
        with path.open("rb") as handle:
            while handle.read(1 << 20):
                pass


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_nginx(workdir: Path, files: Path, port: int) -> subprocess.Popen[bytes]:
    prefix = workdir / "nginx"
    prefix.mkdir(exist_ok=True)
    conf = prefix / "nginx.conf"
    temps = "\n".join(
        f"  {kind}_temp_path {prefix}/{kind};"
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    conf.write_text(f"""
worker_processes 1;
daemon off;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log warn;
events {{ worker_connections 1024; }}
http {{
  access_log off;
  sendfile on;
  tcp_nopush on;
  keepalive_requests 100000;
  keepalive_timeout 60;
  default_type video/mp4;
{temps}
  server {{
    listen 127.0.0.1:{port};
    root {files};
  }}
}}
""")
    process = subprocess.Popen([NGINX, "-p", str(prefix), "-c", str(conf), "-e", "stderr"])
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return process
        except OSError:
            time.sleep(0.05)
    process.kill()
    raise RuntimeError("nginx did not start")


# --- one run ----------------------------------------------------------------------------


def command(
    tool: str, scenario: Scenario, base: str, out: Path, lists: Path, files: Path
) -> list[str]:
    names = [f"f{i:05d}.mp4" for i in range(scenario.count)]
    urls = [f"{base}/{scenario.name}/{n}" for n in names]
    j = str(scenario.concurrency)
    if tool == "curl":
        config = lists / f"curl-{scenario.name}.txt"
        config.write_text(
            "".join(
                f'url = "{u}"\noutput = "{out / n}"\n' for u, n in zip(urls, names, strict=True)
            )
        )
        return [
            "curl",
            "--silent",
            "--show-error",
            "--fail",
            "--parallel",
            "--parallel-max",
            j,
            "--parallel-immediate",
            "-K",
            str(config),
        ]
    if tool == "aria2c":
        listing = lists / f"aria2-{scenario.name}.txt"
        listing.write_text("".join(f"{u}\n  out={n}\n" for u, n in zip(urls, names, strict=True)))
        return [
            "aria2c",
            f"-j{j}",
            "--quiet",
            "--allow-overwrite=true",
            "--auto-file-renaming=false",
            "-d",
            str(out),
            "-i",
            str(listing),
        ]
    listing = lists / f"ours-{scenario.name}.txt"
    listing.write_text("".join(f"{u}\t{n}\n" for u, n in zip(urls, names, strict=True)))
    if tool == "durable":
        return [
            sys.executable,
            "-m",
            "bench.transfer.durable",
            "--list",
            str(listing),
            "--source",
            str(files),
            "--out",
            str(out),
            "--concurrency",
            j,
        ]
    engine = [
        sys.executable,
        "-m",
        "bench.transfer.ours",
        "--list",
        str(listing),
        "--out",
        str(out),
        "--concurrency",
        j,
    ]
    if tool == "before":  # the engine of another checkout (``--baseline``), as it was
        return ["env", "-C", str(BASELINE[0]), *engine]
    return [
        *engine,
        "--report",
        str(lists / "ours-report.json"),
    ]


def measure(argv: list[str], lists: Path) -> Sample:
    """Run under GNU time: its child is forked from a tiny process, so ``ru_maxrss`` is the
    tool's own (a child forked from this Python would inherit our RSS as its high-water mark
    across exec)."""
    usage = lists / "usage.txt"
    timed = [TIME, "-o", str(usage), "-f", "%U %S %M", *argv]
    started = time.perf_counter()
    with (usage.parent / "tool.log").open("ab") as log:
        subprocess.run(timed, cwd=ROOT, check=True, stdout=log, stderr=log)
    seconds = time.perf_counter() - started
    user, system, rss_kib = usage.read_text().split()[-3:]
    inner = None
    report = lists / "ours-report.json"
    if "bench.transfer.ours" in argv and report.exists():
        inner = float(json.loads(report.read_text())["seconds"])
        report.unlink()
    return Sample(seconds, float(user) + float(system), int(rss_kib) / 1024, inner=inner)


def fresh_output(out: Path, scenario: Scenario, run: int, tool: str) -> Path:
    """An empty directory for one run, written back to disk first.

    Many-file scenarios keep the earlier runs' files until the scenario ends: on ext4 the
    inode allocator skips inodes freed in the last minute (``recently_deleted``, expensive
    without a journal), so a run right after 2,000 deletions spent a large part of its CPU
    in the kernel looking for a free inode, a cost that fell on whichever tool came next.
    Large files are few: their runs delete the previous output (2 GB each) as before.
    """
    if scenario.count <= 100:
        shutil.rmtree(out, ignore_errors=True)
    target = out / f"{scenario.name}-{run + 1}-{tool}" if scenario.count > 100 else out
    target.mkdir(parents=True)
    os.sync()
    return target


def check_output(out: Path, scenario: Scenario) -> None:
    files = sorted(p for p in out.iterdir() if p.suffix == ".mp4")
    assert len(files) == scenario.count, (out, len(files))
    assert all(p.stat().st_size == scenario.size for p in files)


# --- report -----------------------------------------------------------------------------


def rate(scenario: Scenario, sample: Sample) -> float:
    if scenario.name == "small":
        return scenario.count / sample.seconds
    return scenario.count * scenario.size / MB / sample.seconds


def report(results: dict[tuple[str, str], list[Sample]], runs: int, argv: str, load: str) -> str:
    lines = [
        "# Transfer benchmark results",
        "",
        f"Command: `{argv}`  ",
        f"Machine: {os.cpu_count()} CPUs, {platform.platform()}, Python "
        f"{platform.python_version()}; tools: {tool_versions()}  ",
        f"Load average (1/5/15 min): {load} (other work on the host shows up here and "
        "makes the numbers noisier; the 1-minute figure after every run is in the last "
        "table).  ",
        f"Runs per tool and scenario: {runs} (interleaved); values are medians. Throughput is "
        "MB/s (10^6) for large files and files/s for the small-file case; CPU is user+sys "
        "seconds of the tool's process; RSS is its peak (max over runs). *sync after* is an "
        "untimed `sync` right after each run: the dirty data the tool left for the kernel "
        "to write (ours fsyncs every checkpoint and every file before its rename).",
        "",
        "| scenario | tool | throughput | wall s | CPU s | peak RSS MiB | sync after s |",
        "|---|---|---|---|---|---|---|",
    ]
    med: dict[tuple[str, str], Sample] = {}
    tools = [t for t in (*TOOLS, "before", *REFERENCES) if any(k[1] == t for k in results)]
    for scenario in SCENARIOS:
        for tool in tools:
            samples = results[(scenario.name, tool)]
            m = Sample(
                statistics.median(s.seconds for s in samples),
                statistics.median(s.cpu for s in samples),
                max(s.rss_mib for s in samples),
                statistics.median(s.sync_after for s in samples),
            )
            med[(scenario.name, tool)] = m
            unit = "files/s" if scenario.name == "small" else "MB/s"
            lines.append(
                f"| {scenario.name} ({scenario.count} x {scenario.size // 1000} kB, "
                f"{scenario.concurrency} in flight) | {tool} | {rate(scenario, m):,.1f} {unit} | "
                f"{m.seconds:.2f} | {m.cpu:.2f} | {m.rss_mib:.1f} | {m.sync_after:.2f} |"
            )
    lines += ["", "Ratios (ours / peer, from the medians above):", ""]
    lines += [
        "| scenario | vs | throughput ratio | CPU ratio | target | met |",
        "|---|---|---|---|---|---|",
    ]
    for scenario in SCENARIOS:
        ours = med[(scenario.name, "ours")]
        for peer in ("curl", "aria2c"):
            other = med[(scenario.name, peer)]
            speed = rate(scenario, ours) / rate(scenario, other)
            cpu = ours.cpu / other.cpu
            target, met = TARGETS.get((scenario.name, peer), ("-", None))
            verdict = "-" if met is None else ("yes" if met(speed, cpu) else "**no**")
            lines.append(
                f"| {scenario.name} | {peer} | {speed:.2f} | {cpu:.2f} | {target} | {verdict} |"
            )
    if "durable" in tools:
        lines += durability_table(med)
    if "before" in tools:
        lines += [
            "",
            f"Before/after, same invocation: ours / before (the engine at {BASELINE[0]}):",
            "",
            "| scenario | throughput ratio | CPU ratio | RSS MiB before -> after |",
            "|---|---|---|---|",
        ]
        for scenario in SCENARIOS:
            ours, before = med[(scenario.name, "ours")], med[(scenario.name, "before")]
            lines.append(
                f"| {scenario.name} | {rate(scenario, ours) / rate(scenario, before):.2f} | "
                f"{ours.cpu / before.cpu:.2f} | {before.rss_mib:.1f} -> {ours.rss_mib:.1f} |"
            )
    worst = max(m.rss_mib for (name, tool), m in med.items() if tool == "ours")
    lines += [
        "",
        f"Peak RSS of ours, worst case: {worst:.1f} MiB (target <= 64 MiB: "
        f"{'met' if worst <= 64 else '**missed**'}).",
        "",
        "Ours measured inside the process (from the first request to the last rename, so "
        "without the interpreter's start-up and imports, which the wall times above include), "
        "against the same peers' medians:",
        "",
        "| scenario | ours in-process s | throughput | vs curl | vs aria2c |",
        "|---|---|---|---|---|",
    ]
    for scenario in SCENARIOS:
        inner = [s.inner for s in results[(scenario.name, "ours")] if s.inner is not None]
        if not inner:
            continue
        m = Sample(statistics.median(inner), 0.0, 0.0)
        unit = "files/s" if scenario.name == "small" else "MB/s"
        ratios = [rate(scenario, m) / rate(scenario, med[(scenario.name, p)]) for p in PEERS]
        lines.append(
            f"| {scenario.name} | {m.seconds:.2f} | {rate(scenario, m):,.1f} {unit} | "
            f"{ratios[0]:.2f} | {ratios[1]:.2f} |"
        )
    lines += [
        "",
        "Every run (load = 1-minute load average when the run ended):",
        "",
        "| scenario | tool | run | wall s | CPU s | RSS MiB | sync after s | load |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for scenario in SCENARIOS:
        for tool in tools:
            for i, s in enumerate(results[(scenario.name, tool)], 1):
                lines.append(
                    f"| {scenario.name} | {tool} | {i} | {s.seconds:.2f} | "
                    f"{s.cpu:.2f} | {s.rss_mib:.1f} | {s.sync_after:.2f} | {s.load:.1f} |"
                )
    return "\n".join(lines) + "\n"


def durability_table(med: dict[tuple[str, str], Sample]) -> list[str]:
    """The same runs, counting the time until every tool's data is on the disk."""
    lines = [
        "",
        "With durability counted: *curl + sync* is curl's wall time plus the `sync` right "
        "after it (the moment its data is on the disk; ours fsyncs as it goes, its "
        "*sync after* is ~0); *durable* is the reference copy with no network and no hash "
        "(`durable.py`): about the most any tool that makes data durable as ours does "
        "reaches on this disk.",
        "",
        "| scenario | curl | curl + sync | durable | ours | ours / (curl + sync) "
        "| ours / durable | curl / durable |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for scenario in SCENARIOS:
        if (scenario.name, "durable") not in med:
            continue
        curl, ours = med[(scenario.name, "curl")], med[(scenario.name, "ours")]
        durable = med[(scenario.name, "durable")]
        synced = replace(curl, seconds=curl.seconds + curl.sync_after)
        unit = " files/s" if scenario.name == "small" else " MB/s"
        rates = [rate(scenario, m) for m in (curl, synced, durable, ours)]
        lines.append(
            f"| {scenario.name} | "
            + " | ".join(f"{r:,.1f}{unit}" for r in rates)
            + f" | {rates[3] / rates[1]:.2f} | {rates[3] / rates[2]:.2f} "
            f"| {rates[0] / rates[2]:.2f} |"
        )
    return lines


def tool_versions() -> str:
    def first(argv: list[str]) -> str:
        done = subprocess.run(argv, capture_output=True, text=True, check=False)
        return (done.stdout or done.stderr).splitlines()[0].strip()

    return "; ".join(
        (
            first(["curl", "--version"]).split(" (")[0],
            first(["aria2c", "--version"]),
            first([NGINX, "-v"]),
        )
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--workdir", type=Path, default=Path("/var/tmp/recall-dl-bench"))
    parser.add_argument("--only", choices=[s.name for s in SCENARIOS], action="append")
    parser.add_argument("--tools", default=",".join(TOOLS + REFERENCES))
    parser.add_argument(
        "--baseline",
        type=Path,
        help="a checkout (e.g. `git worktree add /tmp/before <commit>`) whose engine also runs, "
        "interleaved, as the tool 'before'",
    )
    parser.add_argument("--output", type=Path, default=HERE / "RESULTS.md")
    args = parser.parse_args()
    ensure_tools()
    workdir: Path = args.workdir
    files, out, lists = workdir / "files", workdir / "out", workdir / "lists"
    lists.mkdir(parents=True, exist_ok=True)
    make_files(files)
    os.chmod(workdir, 0o755)
    port = free_port()
    nginx = start_nginx(workdir, files, port)
    base = f"http://127.0.0.1:{port}"
    tools = args.tools.split(",")
    if args.baseline is not None:
        BASELINE.append(args.baseline.resolve())
        tools.append("before")
    load = " / ".join(f"{v:.2f}" for v in os.getloadavg())
    results: dict[tuple[str, str], list[Sample]] = {}
    try:
        for scenario in SCENARIOS:
            if args.only and scenario.name not in args.only:
                continue
            shutil.rmtree(out, ignore_errors=True)
            os.sync()
            for run in range(args.runs):
                # the first tool of a round runs in different conditions than the others
                # (see below); rotating the order gives every tool that slot in turn
                for tool in tools[run % len(tools) :] + tools[: run % len(tools)]:
                    target = fresh_output(out, scenario, run, tool)
                    sample = measure(command(tool, scenario, base, target, lists, files), lists)
                    synced = time.perf_counter()
                    os.sync()
                    sample = replace(
                        sample, sync_after=time.perf_counter() - synced, load=os.getloadavg()[0]
                    )
                    check_output(target, scenario)
                    results.setdefault((scenario.name, tool), []).append(sample)
                    print(
                        f"{scenario.name:6} {tool:6} run {run + 1}: {sample.seconds:6.2f} s "
                        f"{rate(scenario, sample):9.1f} cpu {sample.cpu:5.2f} s "
                        f"rss {sample.rss_mib:6.1f} MiB sync-after {sample.sync_after:5.2f} s "
                        f"load {sample.load:4.1f}",
                        flush=True,
                    )
    finally:
        nginx.terminate()
        nginx.wait()
        shutil.rmtree(out, ignore_errors=True)
    if not args.only and set(TOOLS) <= set(tools):
        argv = "python -m bench.transfer.run " + " ".join(sys.argv[1:])
        load += " when the runs started, " + " / ".join(f"{v:.2f}" for v in os.getloadavg())
        load += " when they ended"
        args.output.write_text(report(results, args.runs, argv.strip(), load))
        print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
