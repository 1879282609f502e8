"""The ``recall-dl`` command: subcommands, exit codes, and one clear line per error."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from importlib import import_module

from downloader.cli.common import EXIT_AUTH, EXIT_FAILED, EXIT_USAGE
from downloader.errors import AuthError, ConfigError, RecallDlError
from downloader.store.protocol import StoreCorrupt

# name -> (module, one-line help). Each module has add_arguments(parser) and run(args) -> int.
SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "fetch": ("downloader.cli.fetch", "download every separate video of some bots, then exit"),
    "add": ("downloader.cli.add", "queue bots for the running service"),
    "status": ("downloader.cli.status", "show jobs per state, bytes and failures"),
    "retry": ("downloader.cli.retry", "re-queue failed jobs (or named done ones)"),
    "verify": ("downloader.cli.verify", "re-hash downloaded files against their sidecars"),
    "demo": ("downloader.cli.demo", "try recall-dl against the bundled simulator"),
    "simulate": ("downloader.simulator.command", "run the bundled Recall API simulator"),
    "run": ("downloader.cli.run", "run the long-lived download service"),
    "backfill": ("downloader.cli.backfill", "download months of history"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="recall-dl",
        description="Bulk, resumable, verified downloads of Recall.ai per-participant videos.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, (module_name, help_text) in SUBCOMMANDS.items():
        module = import_module(module_name)
        command = sub.add_parser(name, help=help_text, description=help_text)
        module.add_arguments(command)
        command.set_defaults(handler=module.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    from downloader.tuning import freeze_startup_objects, tune_allocator

    tune_allocator()
    parser = build_parser()
    args = parser.parse_args(argv)
    freeze_startup_objects()
    handler: Callable[[argparse.Namespace], int] = args.handler
    try:
        try:
            return handler(args)
        except BaseExceptionGroup as group:
            raise _first_recall_error(group) from group
    except AuthError as exc:
        print(f"recall-dl: {exc.reason}", file=sys.stderr)
        return EXIT_AUTH
    except (ConfigError, StoreCorrupt) as exc:
        print(f"recall-dl: {exc.reason}", file=sys.stderr)
        return EXIT_USAGE
    except RecallDlError as exc:
        print(f"recall-dl: {exc.reason}", file=sys.stderr)
        return EXIT_FAILED


def _first_recall_error(group: BaseExceptionGroup[BaseException]) -> BaseException:
    """Task groups wrap errors; report the first one of ours (e.g. a 401 in any worker)."""
    matched, _rest = group.split(RecallDlError)
    if matched is None:
        return group
    leaf: BaseException = matched
    while isinstance(leaf, BaseExceptionGroup):
        leaf = leaf.exceptions[0]
    return leaf


if __name__ == "__main__":
    sys.exit(main())
