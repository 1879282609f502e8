"""The simulator's pure parts, without sockets: config, ids, MP4 bytes, ranges, limits, plans."""

from __future__ import annotations

import hashlib
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from downloader.simulator import (
    BotSpec,
    FaultConfig,
    Lifecycle,
    SimulatorConfig,
    parse_faults,
    parse_size,
    top_level_boxes,
)
from downloader.simulator.clock import iso, parse_iso
from downloader.simulator.faults import FaultInjector
from downloader.simulator.ids import IdCodec, Kind, Ref
from downloader.simulator.media import RANGE_UNSATISFIABLE, parse_range
from downloader.simulator.mp4 import build, random_block
from downloader.simulator.ratelimit import SlidingWindow
from downloader.simulator.timeline import build_plan

BLOCK = random_block(1)


def test_parse_faults_counts_and_probabilities() -> None:
    faults = parse_faults("5xx=0.1, 429=3,truncate=0.2,stall=1,stall_seconds=2,expire=1.0")
    assert faults.api_5xx == pytest.approx(0.1)
    assert faults.api_429 == 3
    assert isinstance(faults.api_429, int)
    assert faults.stall == 1
    assert isinstance(faults.stall, int)
    assert faults.expire == 1.0
    assert isinstance(faults.expire, float)  # "1.0" is a certainty, "1" is one injection
    assert faults.stall_seconds == 2.0
    assert parse_faults("") == FaultConfig()
    with pytest.raises(ValueError, match="unknown fault"):
        parse_faults("gremlins=1")
    with pytest.raises(ValueError, match="needs a value"):
        parse_faults("truncate")


@pytest.mark.parametrize(
    ("text", "size"),
    [("4096", 4096), ("256K", 262144), ("4M", 4 << 20), ("1.5k", 1536), ("2MiB", 2 << 20)],
)
def test_parse_size(text: str, size: int) -> None:
    assert parse_size(text) == size


def test_config_validation_and_lifecycle_tuples() -> None:
    assert SimulatorConfig(bot_lifecycle=(1, 2, 3, 4)).lifecycle == Lifecycle(1, 2, 3, 4, 4)
    assert BotSpec(lifecycle=(0, 0, 0, 0, 1)).lifecycle == Lifecycle(0, 0, 0, 0, 1)
    with pytest.raises(ValueError, match="part_size"):
        SimulatorConfig(part_size=10)
    with pytest.raises(ValueError, match="outcome"):
        BotSpec(outcome="exploded")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="probability"):
        FaultConfig(truncate=1.5)


def test_counted_fault_fires_exactly_n_times_and_probability_is_seeded() -> None:
    counted = FaultInjector(FaultConfig(truncate=3), seed=1)
    assert sum(counted.fire("truncate") for _ in range(100)) == 3
    assert counted.injected["truncate"] == 3
    a = FaultInjector(FaultConfig(api_5xx=0.3), seed=9)
    b = FaultInjector(FaultConfig(api_5xx=0.3), seed=9)
    runs_a = [a.fire("api_5xx") for _ in range(200)]
    assert runs_a == [b.fire("api_5xx") for _ in range(200)]
    assert 30 < sum(runs_a) < 90


@given(
    kind=st.sampled_from(list(Kind)),
    bot=st.integers(0, 2**32 - 1),
    rec=st.integers(0, 255),
    part=st.integers(0, 2**16 - 1),
)
def test_ids_round_trip_and_are_uuid4(kind: Kind, bot: int, rec: int, part: int) -> None:
    codec = IdCodec(seed=3)
    text = codec.encode(kind, Ref(bot, rec, part))
    assert text[14] == "4"
    assert text[19] in "89ab"
    assert codec.decode(kind, text) == Ref(bot, rec, part)
    other = next(k for k in Kind if k is not kind)
    assert codec.decode(other, text) is None
    assert IdCodec(seed=4).decode(kind, text) is None


def test_foreign_ids_do_not_decode() -> None:
    codec = IdCodec(seed=1)
    for text in ["", "not-a-uuid", "00000000-0000-4000-8000-000000000000", "x" * 36]:
        assert codec.decode(Kind.BOT, text) is None


@settings(max_examples=60, deadline=None)
@given(size=st.integers(256, 3 << 20), data=st.data())
def test_mp4_boxes_tile_the_file_and_ranges_are_slices(size: int, data: st.DataObject) -> None:
    obj = build(size, "part-x:v0", BLOCK, duration_seconds=12.5, created_unix=1_700_000_000)
    whole = obj.read(0, size)
    assert len(whole) == size
    boxes = top_level_boxes(whole)
    assert [b[0] for b in boxes] == ["ftyp", "mdat", "moov"]
    assert sum(b[2] for b in boxes) == size
    moov = whole[boxes[2][1] :]
    assert moov[12:16] == b"mvhd"
    assert struct.unpack(">I", moov[8 + 8 + 4 + 8 + 4 : 8 + 8 + 4 + 8 + 8])[0] == 12500  # ms
    start = data.draw(st.integers(0, size - 1))
    end = data.draw(st.integers(start, size))
    assert obj.read(start, end) == whole[start:end]
    assert b"".join(obj.chunks(start, end, 1000)) == whole[start:end]


def test_mp4_content_depends_on_part_and_version() -> None:
    a = build(8192, "a:v0", BLOCK).read(0, 8192)
    assert a == build(8192, "a:v0", BLOCK).read(0, 8192)
    digests = {
        hashlib.sha256(build(8192, k, BLOCK).read(0, 8192)).digest() for k in ["b:v0", "a:v1"]
    }
    assert hashlib.sha256(a).digest() not in digests
    assert len(digests) == 2


def test_mp4_large_mdat_uses_a_64_bit_size() -> None:
    size = (1 << 32) + 4096
    obj = build(size, "big:v0", BLOCK)
    header = obj.read(0, 48)
    assert header[32:40] == struct.pack(">I4s", 1, b"mdat")
    assert struct.unpack(">Q", header[40:48])[0] == size - 32 - 116
    assert obj.read(size - 116, size)[4:8] == b"moov"


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (None, None),
        ("bytes=0-", (0, 1000)),
        ("bytes=10-19", (10, 20)),
        ("bytes=990-5000", (990, 1000)),
        ("bytes=-100", (900, 1000)),
        ("bytes=-5000", (0, 1000)),
        ("bytes=1000-", RANGE_UNSATISFIABLE),
        ("bytes=-0", RANGE_UNSATISFIABLE),
        ("bytes=20-10", None),
        ("bytes=0-1,5-6", None),
        ("items=0-1", None),
        ("bytes=abc", None),
    ],
)
def test_parse_range(header: str | None, expected: object) -> None:
    assert parse_range(header, 1000) == expected


def test_sliding_window_is_drf_simple_rate_throttle() -> None:
    window = SlidingWindow(limit=3, window_seconds=10.0)
    assert all(window.check(t).allowed for t in (0.0, 1.0, 2.0))
    refused = window.check(2.5)
    assert not refused.allowed
    assert refused.retry_after == 8  # ceil(0 + 10 - 2.5)
    assert not window.check(9.99).allowed  # refusals are not recorded and do not extend
    assert window.check(10.0).allowed  # the request at t=0 left the window
    short = SlidingWindow(limit=1, window_seconds=0.2)
    assert short.check(0.0).allowed
    assert short.check(0.1).retry_after == 1  # never 0, always whole seconds
    assert SlidingWindow(None, 1.0).check(0).allowed


def test_iso_round_trip_is_exact() -> None:
    us = 1_752_710_409_730_066
    assert iso(us) == "2025-07-17T00:00:09.730066Z"
    assert parse_iso(iso(us)) == us
    assert parse_iso("2025-07-17") == 1_752_710_400_000_000
    assert parse_iso("2025-07-17T02:00:00+02:00") == 1_752_710_400_000_000


def test_plans_follow_the_outcome() -> None:
    life = Lifecycle(1, 4, 1, 1, 2)
    done = build_plan(life, 1.0, "done", None, 2)
    assert [c.code for c in done.status_changes] == [
        "joining_call",
        "in_call_recording",
        "call_ended",
        "done",
    ]
    assert done.status_at(0) is not None
    assert done.status_at(-1) is None
    first, second = done.recordings
    assert first.started < first.completed <= second.started < second.completed
    assert first.vs_created == first.completed
    fatal = build_plan(life, 1.0, "fatal", "bot_kicked_from_call", 1)
    assert fatal.status_changes[-1].code == "fatal"
    assert fatal.status_changes[-1].sub_code == "bot_kicked_from_call"
    assert fatal.recordings == ()
    failed = build_plan(life, 1.0, "video_separate_failed", None, 1)
    assert failed.recordings[0].vs_failed
    assert failed.vs_failed_sub_code == "video_separate_processing_failed"
    assert build_plan(life, 1.0, "no_video_separate", None, 1).recordings[0].vs_created is None
    scaled = build_plan(life, 0.5, "done", None, 1)
    assert scaled.status_changes[-1].at == 3_000_000
