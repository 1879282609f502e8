"""Paths, query strings and pagination links (pure)."""

from __future__ import annotations

import datetime as dt

import pytest
from yarl import URL

from downloader.errors import InvalidResponse, NotFound
from downloader.recall.query import (
    BOT_PATH,
    VIDEO_SEPARATE_PATH,
    api_url,
    build_query,
    detail_path,
    follow_link,
    format_time,
)

BASE = URL("https://eu-central-1.recall.ai")


def test_paths_end_in_a_slash() -> None:
    assert detail_path(BOT_PATH, "abc-123", "bot") == "/api/v1/bot/abc-123/"
    assert str(api_url(BASE, BOT_PATH)) == "https://eu-central-1.recall.ai/api/v1/bot/"
    with pytest.raises(ValueError, match="end in"):
        api_url(BASE, "/api/v1/bot")


def test_base_path_prefix_is_kept() -> None:
    url = api_url(URL("http://127.0.0.1:8080/prefix/"), VIDEO_SEPARATE_PATH, [("a", "b")])
    assert str(url) == "http://127.0.0.1:8080/prefix/api/v1/video_separate/?a=b"


@pytest.mark.parametrize("bad", ["", ".", "..", "../bot", "a/b", "a?b=1", "a#b", "a b", "x" * 201])
def test_ids_must_be_one_plain_segment(bad: str) -> None:
    with pytest.raises(NotFound, match="not a valid Recall id"):
        detail_path(BOT_PATH, bad, "bot")


def test_query_repeats_arrays_and_formats_times() -> None:
    after = dt.datetime(2025, 1, 2, 3, 4, 5, tzinfo=dt.timezone(dt.timedelta(hours=2)))
    pairs = build_query(
        {
            "status": ["done", "fatal"],
            "join_at_after": after,
            "join_at_before": "2025-02-01T00:00:00Z",
            "recording_id": None,
            "page": 2,
        },
        {"customer": "acme", "team": "a b"},
    )
    assert pairs == [
        ("status", "done"),
        ("status", "fatal"),
        ("join_at_after", "2025-01-02T01:04:05Z"),
        ("join_at_before", "2025-02-01T00:00:00Z"),
        ("page", "2"),
        ("metadata__customer", "acme"),
        ("metadata__team", "a b"),
    ]
    url = api_url(BASE, BOT_PATH, pairs)
    assert url.query.getall("status") == ["done", "fatal"]
    assert url.query["metadata__team"] == "a b"


def test_naive_times_and_odd_metadata_keys_are_refused() -> None:
    with pytest.raises(ValueError, match="timezone"):
        format_time(dt.datetime(2025, 1, 1))
    with pytest.raises(ValueError, match="metadata"):
        build_query({}, {"a&b": "x"})


def test_next_links_on_the_api_host_are_followed_as_given() -> None:
    link = (
        "https://eu-central-1.recall.ai/api/v1/video_separate/?cursor=cD0yMDI1LTA%3D&recording_id=r"
    )
    url = follow_link(link, BASE, VIDEO_SEPARATE_PATH)
    assert str(url) == link
    assert url.query["cursor"] == "cD0yMDI1LTA="


def test_relative_and_plain_http_links_are_pinned_to_the_api_host() -> None:
    assert str(follow_link("/api/v1/bot/?page=2", BASE, BOT_PATH)).startswith("https://eu-central")
    upgraded = follow_link("http://eu-central-1.recall.ai/api/v1/bot/?page=3", BASE, BOT_PATH)
    assert upgraded.scheme == "https"
    assert upgraded.port == 443


@pytest.mark.parametrize(
    "link",
    [
        "https://evil.example/api/v1/bot/?page=2",
        "https://us-east-1.recall.ai/api/v1/bot/?page=2",
        "https://eu-central-1.recall.ai:8443/api/v1/bot/?page=2",
        "https://user:pw@eu-central-1.recall.ai/api/v1/bot/?page=2",
        "https://eu-central-1.recall.ai/api/v1/recording/?page=2",
    ],
)
def test_links_elsewhere_are_invalid(link: str) -> None:
    with pytest.raises(InvalidResponse) as info:
        follow_link(link, BASE, BOT_PATH)
    assert "page=2" not in str(info.value)


def test_plain_http_api_keeps_http() -> None:
    base = URL("http://127.0.0.1:5000")
    assert str(follow_link("http://127.0.0.1:5000/api/v1/bot/?page=2", base, BOT_PATH)).startswith(
        "http://127.0.0.1:5000/"
    )
    with pytest.raises(InvalidResponse):
        follow_link("http://127.0.0.1:5001/api/v1/bot/?page=2", base, BOT_PATH)
