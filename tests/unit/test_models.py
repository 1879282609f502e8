"""Parsing Recall JSON: tolerant of the unknown, strict about what we rely on."""

from __future__ import annotations

import pytest

from downloader.errors import InvalidResponse
from downloader.models import Bot, Page, VideoSeparate, parse_manifest


def part(pid: str = "p1", **extra: object) -> dict[str, object]:
    base: dict[str, object] = {
        "id": pid,
        "participant": {
            "id": 100,
            "name": "Ann",
            "is_host": True,
            "platform": "desktop",
            "extra_data": {},
        },
        "start_timestamp": {"absolute": "2025-07-17T00:00:09.730066Z", "relative": 9.73},
        "duration": 12.5,
        "type": "webcam",
        "download_url": "https://x.s3.amazonaws.com/a.mp4",
    }
    base.update(extra)
    return base


def test_bot_state_is_last_status_change_and_unknown_codes_flow_through() -> None:
    bot = Bot.parse(
        {
            "id": "b1",
            "status_changes": [
                {"code": "joining_call", "sub_code": None, "created_at": "t1"},
                {"code": "brand_new_code", "sub_code": "x", "created_at": "t2"},
            ],
            "recordings": [{"id": "r1", "status": {"code": "processing"}, "surprise": 1}],
            "unexpected_top_level": {"a": 1},
        }
    )
    assert bot.status is not None and bot.status.code == "brand_new_code"
    assert bot.recordings[0].id == "r1"


def test_video_separate_processing_has_no_url() -> None:
    vs = VideoSeparate.parse(
        {
            "id": "v",
            "recording": {"id": "r"},
            "status": {"code": "processing"},
            "data": {"download_url": None},
        }
    )
    assert vs.download_url is None and vs.recording_id == "r"


def test_manifest_fields_and_email_optional() -> None:
    parts = parse_manifest([part(), part("p2", type="screenshare")])
    assert parts[0].participant.email is None
    assert parts[0].start_relative == pytest.approx(9.73)
    assert parts[1].type == "screenshare"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"not": "a list"}, "array"),
        ([part(participant={"id": "100"})], "id"),
        ([part(download_url=None)], "download_url"),
        ([part(duration="long")], "duration"),
        ([part(), part()], "twice"),
    ],
)
def test_manifest_errors_name_the_field(body: object, field: str) -> None:
    with pytest.raises(InvalidResponse, match=field):
        parse_manifest(body)


def test_page_both_kinds() -> None:
    numbered = Page.parse(
        {"count": 3, "next": "http://h/api/v1/bot/?page=2", "previous": None, "results": [{}]},
        "bots",
    )
    cursor = Page.parse({"next": None, "previous": None, "results": []}, "vs")
    assert numbered.count == 3 and numbered.next_url
    assert cursor.count is None and cursor.next_url is None
