"""``recall-dl simulate`` / ``python -m downloader.simulator``: run a fake workspace until stopped.

On start it prints shell lines to point a client at it, then the bot ids, and flushes, so a
test or a user can read them before anything else happens.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from typing import TextIO

from yarl import URL

from .config import (
    DEFAULT_FATAL_SUB_CODE,
    DEFAULT_URL_TTL_SECONDS,
    SimulatorConfig,
    parse_faults,
    parse_size,
)
from .server import ListenError, Simulator

DEFAULT_PORT = 8000
EXIT_USAGE = 2
SPECIAL_LABELS = {
    "fatal": f"fatal bots (sub_code {DEFAULT_FATAL_SUB_CODE})",
    "video_separate_failed": "bots whose video_separate failed",
    "no_video_separate": "bots without video_separate",
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    d = SimulatorConfig()
    add = parser.add_argument
    add("--host", default=d.host, help="address to bind (default %(default)s)")
    add("--port", type=int, default=DEFAULT_PORT, help="API port; 0 = any (default %(default)s)")
    add("--bots", type=int, default=d.bots, help="ordinary bots generated at start")
    add("--participants", type=int, default=d.participants_per_bot, help="participants per bot")
    add("--parts-per-participant", type=int, default=d.parts_per_participant)
    add("--recordings-per-bot", type=int, default=d.recordings_per_bot)
    add("--part-size", type=parse_size, default=d.part_size, help="bytes per part (256K, 4M, ...)")
    add("--seed", type=int, default=d.seed)
    add("--time-scale", type=float, default=d.time_scale, help="0 = every bot already done")
    add(
        "--url-ttl", type=float, default=DEFAULT_URL_TTL_SECONDS, help="pre-signed URL lifetime (s)"
    )
    add(
        "--list-limit",
        type=int,
        default=d.list_limit_per_min,
        help="list requests per window (0 = none)",
    )
    add("--retrieve-limit", type=int, default=d.retrieve_limit_per_min)
    add("--rate-window", type=float, default=d.rate_window_seconds, help="rate window (s)")
    add("--page-size", type=int, default=d.page_size)
    add("--spread-days", type=float, default=d.created_at_spread_days,
        help="spread ordinary bots back in time over this many days")  # fmt: skip
    add("--arrival-interval", type=float, default=None, help="a new bot every N seconds")
    add("--faults", type=parse_faults, default=d.faults, metavar="SPEC",
        help='e.g. "5xx=0.1,429=3,truncate=0.2,stall=1,stall_seconds=5"')  # fmt: skip
    add(
        "--retention-hours",
        type=float,
        default=None,
        metavar="H",
        help="recordings expire H hours after they are done (expires_at), then their media "
        "is deleted (recording and video_separate 'deleted', bot 'media_expired', links "
        "404); default: never",
    )
    add(
        "--fatal-bots",
        type=int,
        default=0,
        metavar="N",
        help="also add N bots that end fatal (sub_code bot_errored) and record nothing",
    )
    add(
        "--failed-video-separate-bots",
        type=int,
        default=0,
        metavar="N",
        help="also add N bots that record but whose video_separate ends failed",
    )
    add(
        "--no-video-separate-bots",
        type=int,
        default=0,
        metavar="N",
        help="also add N bots recorded without video_separate_mp4 (none is ever listed)",
    )
    add("--api-key", default=d.api_key)
    add("--throttle", type=parse_size, default=None, help="media bytes/s per response")
    add("--webhook-url", default=None)
    add("--webhook-secret", default=None, help="whsec_<base64>")


def config_from_args(args: argparse.Namespace) -> SimulatorConfig:
    return SimulatorConfig(
        host=args.host,
        api_port=args.port,
        bots=args.bots,
        participants_per_bot=args.participants,
        parts_per_participant=args.parts_per_participant,
        recordings_per_bot=args.recordings_per_bot,
        part_size=args.part_size,
        seed=args.seed,
        time_scale=args.time_scale,
        url_ttl_seconds=args.url_ttl,
        list_limit_per_min=args.list_limit or None,  # 0 = no limit
        retrieve_limit_per_min=args.retrieve_limit or None,
        rate_window_seconds=args.rate_window,
        page_size=args.page_size,
        created_at_spread_days=args.spread_days,
        arrival_interval_seconds=args.arrival_interval,
        faults=args.faults,
        api_key=args.api_key,
        throttle_bytes_per_sec=args.throttle,
        webhook_url=args.webhook_url,
        webhook_secret=args.webhook_secret,
        retention_hours=args.retention_hours,
        fatal_bots=args.fatal_bots,
        failed_video_separate_bots=args.failed_video_separate_bots,
        no_video_separate_bots=args.no_video_separate_bots,
    )


def announce(sim: Simulator, out: TextIO, *, max_ids: int = 1000) -> None:
    out.write(f"export RECALL_API_URL={sim.api_url}\n")
    out.write(f"export RECALL_API_KEY={sim.api_key}\n")
    # Host names only (the allow-list ignores ports); loopback http is accepted by recall-dl
    # when the API URL itself is loopback, so this line only documents where links point.
    hosts = {URL(url).host for url in (sim.manifest_url, sim.media_url)}
    out.write(f"export RECALL_DL_ALLOWED_HOSTS={','.join(sorted(h for h in hosts if h))}\n")
    ids = sim.bot_ids
    out.write("bot ids:\n")
    out.writelines(f"{bot_id}\n" for bot_id in ids[:max_ids])
    if len(ids) > max_ids:
        out.write(f"... and {len(ids) - max_ids} more (GET /api/v1/bot/)\n")
    for outcome, label in SPECIAL_LABELS.items():
        special = [b.id for b in sim.state.world.added if b.spec.outcome == outcome]
        if special:
            out.write(f"{label}: {' '.join(special)}\n")
    out.flush()


async def serve(config: SimulatorConfig, out: TextIO) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        async with Simulator(config) as sim:
            announce(sim, out)
            await stop.wait()
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)


def run(args: argparse.Namespace) -> int:
    try:
        config = config_from_args(args)
    except ValueError as exc:
        print(f"recall-dl simulate: {exc}", file=sys.stderr)
        return EXIT_USAGE
    try:
        asyncio.run(serve(config, sys.stdout))
    except ListenError as exc:
        print(f"recall-dl simulate: {listen_problem(exc)}", file=sys.stderr)
        return EXIT_USAGE
    return 0


def listen_problem(exc: ListenError) -> str:
    where = f"{exc.host}:{exc.port}"
    if exc.in_use:
        return (
            f"port {exc.port} is already in use ({where}); choose another with --port N, "
            "or --port 0 for a free one"
        )
    return f"cannot listen on {where}: {exc.strerror} (check --host and --port)"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m downloader.simulator", description="Run a fake Recall.ai workspace."
    )
    add_arguments(parser)
    return run(parser.parse_args(argv))
