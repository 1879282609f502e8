"""`recall-dl demo`: the bundled simulator plus a real fetch, to see recall-dl work end to end.

Starts a simulated Recall workspace in-process (three finished meetings and one bot still in
its call), fetches every bot into ``./recall-dl-demo/`` and prints where the files are.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import anyio

from downloader.app import prepare_out_dir
from downloader.cli.fetch import fetch
from downloader.config import Secret, load_settings, settings_with
from downloader.logs import configure_logging
from downloader.simulator import BotSpec, ParticipantSpec, Simulator, SimulatorConfig
from downloader.simulator.config import parse_size

DEMO_OUT = Path("recall-dl-demo")
DEMO_STATE_NAME = ".recall-dl-state.db"
IN_CALL_LIFECYCLE = (1.0, 6.0, 1.0, 1.0)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--out",
        type=Path,
        default=DEMO_OUT,
        help="where to put the files (default ./recall-dl-demo)",
    )
    parser.add_argument(
        "--state",
        help="job store: a SQLite file path, sqlite:///PATH or postgresql://… "
        f"(default OUT/{DEMO_STATE_NAME})",
    )
    parser.add_argument(
        "--part-size",
        type=parse_size,
        default=512 * 1024,
        help="bytes per simulated MP4 part (256K, 4M, ...)",
    )


async def demo(out: Path, part_size: int, show_bars: bool, state: str | None = None) -> int:
    config = SimulatorConfig(
        bots=3,
        participants_per_bot=3,
        parts_per_participant=2,
        part_size=part_size,
        seed=2026,
        time_scale=1.0,
        bot_lifecycle=(0, 0, 0, 0),
    )
    async with Simulator(config) as sim:
        in_call = sim.add_bot(
            BotSpec(
                participants=[
                    ParticipantSpec(id=1, name="Ada Lovelace", is_host=True, parts=2),
                    ParticipantSpec(id=2, name="Grace Hopper", parts=1, screenshare_parts=1),
                ],
                lifecycle=IN_CALL_LIFECYCLE,
            )
        )
        bots = [*sim.bot_ids, in_call]
        print(f"simulated Recall workspace at {sim.api_url}; fetching {len(bots)} bots into {out}/")
        print(f"(bot {in_call} is still in its call: recall-dl waits for it)")
        settings = settings_with(
            load_settings(env={}),
            api_key=Secret(sim.api_key),
            api_url=sim.api_url,
            out=out,
            poll_initial_seconds=1.0,
            poll_max_seconds=2.0,
        )
        return await fetch(settings, bots, out, state or str(out / DEMO_STATE_NAME), show_bars)


def run(args: argparse.Namespace) -> int:
    configure_logging("warning", "auto")
    out = prepare_out_dir(args.out)
    code = anyio.run(demo, out, args.part_size, sys.stderr.isatty(), args.state)
    sidecars = sorted(out.glob("*/*/manifest.json"))
    print(f"\n{len(sidecars)} recordings downloaded; each folder has a manifest.json sidecar:")
    for sidecar in sidecars:
        print(f"  {sidecar}")
    print(f"\nlook inside: ls -R {out}")
    return code
