"""`recall-dl backfill` arguments: several --metadata pairs, and compact dates as whole days."""

from __future__ import annotations

import argparse
from datetime import UTC, datetime, timedelta

import pytest

from downloader.cli import build_parser
from downloader.cli.backfill import parse_window
from downloader.simulator import BotSpec, ParticipantSpec
from tests.backfill.helpers import downloaded, recordings
from tests.e2e.cli import Workspace

SINCE = "2000-01-01"
NOW = datetime(2030, 1, 1, tzinfo=UTC)


def backfill_args(*argv: str) -> argparse.Namespace:
    return build_parser().parse_args(["backfill", *argv])


@pytest.mark.parametrize(
    "argv",
    [
        ["--metadata", "team=blue", "site=x y"],
        ["--metadata", "team=blue", "--metadata", "site=x y"],
        ["--metadata=team=blue", "--metadata", "site=x y"],
        ["--metadata", "team=red", "--metadata", "team=blue", "site=x y"],  # the last one wins
    ],
)
def test_metadata_takes_several_pairs_after_one_flag_or_repeated(argv: list[str]) -> None:
    window = parse_window(backfill_args("--since", SINCE, *argv), NOW)
    assert window.metadata == {"team": "blue", "site": "x y"}


@pytest.mark.parametrize(
    ("compact", "dashed"),
    [("20261110", "2026-11-10"), ("20240229", "2024-02-29"), ("20261231", "2026-12-31")],
)
def test_compact_dates_are_whole_days_like_dashed_ones(compact: str, dashed: str) -> None:
    day = datetime.fromisoformat(dashed).replace(tzinfo=UTC)
    for since, until in (
        (compact, compact),
        (dashed, dashed),
        (compact, dashed),
        (dashed, compact),
    ):
        window = parse_window(backfill_args("--since", since, "--until", until), NOW)
        assert (window.since, window.until) == (day, day + timedelta(days=1)), (since, until)


def test_a_time_or_a_zone_is_not_widened_to_the_whole_day() -> None:
    for until in ("2026-11-10T00:00:00", "20261110T000000", "2026-11-10T00:00Z"):
        window = parse_window(backfill_args("--since", "20261109", "--until", until), NOW)
        assert window.until == datetime(2026, 11, 10, tzinfo=UTC), until


def blue(site: str) -> BotSpec:
    return BotSpec(
        participants=[ParticipantSpec(id=100, name="Solo", parts=1)],
        metadata={"team": "blue", "site": site},
    )


def test_several_metadata_pairs_after_one_flag_end_to_end(ws: Workspace) -> None:
    x = [ws.sim.add_bot(blue("x")) for _ in range(2)]
    y = [ws.sim.add_bot(blue("y")) for _ in range(3)]

    result = ws.run("backfill", "--since", SINCE, "--metadata", "team=blue", "site=x")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "2 recording(s): 2 done" in result.stdout
    assert {bot for bot, _ in downloaded(ws.out)} == set(x)
    queries = [e["query"] for e in ws.sim.request_log() if e.get("route") == "bot_list"]
    assert queries
    assert all("metadata__team=blue" in q and "metadata__site=x" in q for q in queries)

    result = ws.run("backfill", "--since", SINCE, "--metadata", "site=y", "--metadata", "team=blue")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "3 recording(s): 3 done" in result.stdout
    assert {bot for bot, _ in downloaded(ws.out)} == set(x) | set(y)


def test_compact_until_covers_the_whole_day_end_to_end(ws: Workspace) -> None:
    everything = recordings(ws.sim)  # type: ignore[arg-type]
    day = everything[len(everything) // 2].vs_created.date()
    expected = {(e.bot_id, e.recording_id) for e in everything if e.vs_created.date() == day}
    assert expected

    def planned(since: str, until: str) -> set[tuple[str, str]]:
        result = ws.run("backfill", "--since", since, "--until", until, "--dry-run")
        assert result.returncode == 0, result.stderr[-3000:]
        heads = [line.split()[0] for line in result.stdout.splitlines()[:-1]]
        return {(head.split("/")[0], head.split("/")[1]) for head in heads if "/" in head}

    compact = day.strftime("%Y%m%d")
    assert planned(day.isoformat(), day.isoformat()) == expected
    assert planned(compact, compact) == expected
