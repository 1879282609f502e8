"""`recall-dl add BOT_ID…`: queue bots for the running service (the store is the queue)."""

from __future__ import annotations

import argparse
import sys

import anyio

from downloader.app import open_store_for
from downloader.cli.common import (
    EXIT_OK,
    add_common_options,
    existing_state,
    settings_from_args,
    state_url,
)
from downloader.config import Settings
from downloader.errors import ConfigError
from downloader.lifecycle import JobKind
from downloader.naming import validate_bot_id
from downloader.store.protocol import NewJob, OnConflict
from downloader.urlpolicy import redact_url


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("bot_ids", nargs="+", metavar="BOT_ID", help="Recall bot id (UUID)")
    add_common_options(parser)


def run(args: argparse.Namespace) -> int:
    bot_ids = list(dict.fromkeys(validate_bot_id(b) for b in args.bot_ids))
    settings = settings_from_args(args)
    try:  # a store that did not exist yet is created (bots can be queued before `run`)...
        existing_state(settings)
        created = False
    except ConfigError:
        created = True
    state = state_url(settings)
    new = anyio.run(add_bots, settings, state, bot_ids)
    print(f"queued {new} new bot(s), {len(bot_ids) - new} already known")
    if created:  # ...but a mistyped --state would queue them where no service looks
        print(
            f"recall-dl add: note: created a new job store at {redact_url(state)}; "
            "`recall-dl run` sees these bots only with the same --state",
            file=sys.stderr,
        )
    return EXIT_OK


async def add_bots(settings: Settings, state: str, bot_ids: list[str]) -> int:
    async with open_store_for(settings, state) as store:
        return await store.enqueue(
            [NewJob(kind=JobKind.POLL_BOT, key=b, bot_id=b) for b in bot_ids], OnConflict.REARM
        )
