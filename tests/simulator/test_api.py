"""The API host over real sockets: shapes, pagination, filters, auth, WAF, slashes, limits."""

from __future__ import annotations

import time
from typing import Any

import pytest

from downloader.simulator import (
    BotSpec,
    FaultConfig,
    Lifecycle,
    ParticipantSpec,
)
from downloader.simulator.clock import iso, parse_iso
from tests.simulator.helpers import FAST, running

pytestmark = pytest.mark.anyio

BOT_KEYS = {
    "id", "meeting_url", "bot_name", "join_at", "recording_config", "status_changes",
    "recordings", "output_media", "automatic_video_output", "automatic_audio_output", "chat",
    "automatic_leave", "variant", "calendar_meetings", "zoom", "google_meet", "slack_team",
    "metadata",
}  # fmt: skip
RECORDING_KEYS = {
    "id", "created_at", "started_at", "completed_at", "expires_at", "status",
    "media_shortcuts", "metadata",
}  # fmt: skip
VS_KEYS = {"id", "recording", "created_at", "status", "metadata", "data", "format"}
UNLIMITED = FAST.replace(list_limit_per_min=None, retrieve_limit_per_min=None)


def assert_iso(text: Any) -> None:
    assert isinstance(text, str)
    assert text.endswith("Z")
    parse_iso(text)


async def test_bot_recording_and_video_separate_shapes() -> None:
    async with running() as c:
        bot_id = c.sim.bot_ids[0]
        bot = await c.api_json(f"/api/v1/bot/{bot_id}/")
        assert set(bot) == BOT_KEYS
        assert "status" not in bot
        assert bot["id"] == bot_id
        assert set(bot["meeting_url"]) == {"meeting_id", "platform"}
        assert [s["code"] for s in bot["status_changes"]] == [
            "joining_call",
            "in_call_recording",
            "call_ended",
            "done",
        ]
        for change in bot["status_changes"]:
            assert set(change) == {"code", "message", "created_at", "sub_code"}
            assert_iso(change["created_at"])
        assert bot["recording_config"]["video_separate_mp4"] == {"metadata": {}}
        (recording,) = bot["recordings"]
        assert set(recording) == RECORDING_KEYS
        assert set(recording["status"]) == {"code", "sub_code", "updated_at"}
        assert recording["status"]["code"] == "done"
        assert "video_separate" not in recording["media_shortcuts"]
        assert recording["id"] == c.sim.recording_ids(bot_id)[0]

        detail = await c.api_json(f"/api/v1/recording/{recording['id']}/")
        assert set(detail) == RECORDING_KEYS | {"realtime_endpoints", "bot", "desktop_sdk_upload"}
        assert detail["bot"] == {"id": bot_id, "metadata": {}}

        listed = await c.api_json("/api/v1/video_separate/", {"recording_id": recording["id"]})
        assert set(listed) == {"next", "previous", "results"}  # cursor pagination: no count
        (vs,) = listed["results"]
        assert set(vs) == VS_KEYS
        assert vs["recording"] == {"id": recording["id"], "metadata": {}}
        assert vs["status"]["code"] == "done"
        assert vs["format"] == "mp4"
        assert vs["data"]["download_url"].startswith(c.sim.manifest_url + "/")
        again = await c.api_json(f"/api/v1/video_separate/{vs['id']}/")
        assert again["id"] == vs["id"]
        assert again["data"]["download_url"].startswith("http://127.0.0.1:")


async def test_bot_list_is_page_numbered_to_the_end() -> None:
    async with running(UNLIMITED.replace(bots=25, page_size=10)) as c:
        first = await c.api_json("/api/v1/bot/")
        assert set(first) == {"count", "next", "previous", "results"}
        assert first["count"] == 25
        assert first["previous"] is None
        assert first["next"] == f"{c.sim.api_url}/api/v1/bot/?page=2"
        second = await c.api_json(first["next"])
        assert second["previous"] == f"{c.sim.api_url}/api/v1/bot/"
        third = await c.api_json(second["next"])
        assert third["next"] is None
        assert third["previous"].endswith("?page=2")
        ids = [b["id"] for page in (first, second, third) for b in page["results"]]
        assert ids == c.sim.bot_ids
        assert (await c.api("/api/v1/bot/", {"page": 4})).status == 404
        assert (await c.api("/api/v1/bot/", {"page": "x"})).json() == {"detail": "Invalid page."}


async def test_cursor_lists_walk_both_ways_and_survive_inserts() -> None:
    config = UNLIMITED.replace(bots=13, recordings_per_bot=2, page_size=4)
    async with running(config) as c:
        first = await c.api_json("/api/v1/recording/")
        assert set(first) == {"next", "previous", "results"}
        assert first["previous"] is None
        new_bot = c.sim.add_bot(BotSpec(participants=[ParticipantSpec(id=1)]))
        rest = await c.walk(first["next"])
        everything = first["results"] + rest
        ids = [r["id"] for r in everything]
        assert len(ids) == len(set(ids)) == 13 * 2 + 1  # the insert shows up exactly once
        assert c.sim.recording_ids(new_bot)[0] in ids
        keys = [(parse_iso(r["created_at"]), r["id"]) for r in everything]
        assert keys == sorted(keys)

        # From the last page back to the first with `previous`.
        page = await c.api_json("/api/v1/recording/")
        while page["next"]:
            page = await c.api_json(page["next"])
        backwards = [r["id"] for r in page["results"]]
        while page["previous"]:
            page = await c.api_json(page["previous"])
            backwards = [r["id"] for r in page["results"]] + backwards
        assert backwards == ids

        vs = await c.walk("/api/v1/video_separate/")
        assert len(vs) == 27
        vs_keys = [(parse_iso(v["created_at"]), v["id"]) for v in vs]
        assert vs_keys == sorted(vs_keys)
        assert {v["recording"]["id"] for v in vs} == set(ids)
        bad = await c.api("/api/v1/recording/", {"cursor": "bm9wZQ"})
        assert (bad.status, bad.json()) == (404, {"detail": "Invalid cursor"})


async def test_recording_and_video_separate_filters() -> None:
    config = UNLIMITED.replace(bots=30, created_at_spread_days=10, page_size=7)
    async with running(config) as c:
        everything = await c.walk("/api/v1/recording/")
        assert len(everything) == 30
        middle = everything[12]["created_at"]
        after = await c.walk("/api/v1/recording/", {"created_at_after": middle})
        before = await c.walk("/api/v1/recording/", {"created_at_before": middle})
        assert [r["id"] for r in after] == [r["id"] for r in everything[12:]]
        assert [r["id"] for r in before] == [r["id"] for r in everything[:13]]
        day = iso(parse_iso(middle) - 86_400_000_000)[:10]
        assert all(r["created_at"] >= day for r in await c.walk(
            "/api/v1/recording/", {"created_at_after": day}))  # fmt: skip
        bot_id = c.sim.bot_ids[5]
        by_bot = await c.walk("/api/v1/recording/", {"bot_id": bot_id})
        assert [r["id"] for r in by_bot] == c.sim.recording_ids(bot_id)
        assert await c.walk("/api/v1/recording/", {"status_code": "processing"}) == []
        assert len(await c.walk("/api/v1/recording/", {"status_code": "done"})) == 30
        assert await c.walk("/api/v1/video_separate/", {"status_code": "failed"}) == []
        assert len(await c.walk("/api/v1/video_separate/", {"status_code": "done"})) == 30
        bad = await c.api("/api/v1/recording/", {"created_at_after": "yesterday"})
        assert (bad.status, bad.json()) == (400, {"created_at_after": ["Enter a valid date/time."]})


async def test_invalid_filter_values_are_400_with_drf_field_errors() -> None:
    def choice(value: str) -> list[str]:
        return [f"Select a valid choice. {value} is not one of the available choices."]

    async with running(UNLIMITED) as c:
        cases: list[tuple[str, dict[str, str] | list[tuple[str, str]], dict[str, list[str]]]] = [
            ("/api/v1/video_separate/", {"status_code": "bogus"}, {"status_code": choice("bogus")}),
            ("/api/v1/recording/", {"status_code": "bogus"}, {"status_code": choice("bogus")}),
            # "paused" is a recording status (§3) but not a video_separate one (§4).
            ("/api/v1/video_separate/", {"status_code": "paused"}, {"status_code": choice("paused")}),
            ("/api/v1/video_separate/", {"recording_id": "not-a-uuid"},
             {"recording_id": ["Enter a valid UUID."]}),
            ("/api/v1/bot/", {"status": "zzz"}, {"status": choice("zzz")}),
            ("/api/v1/bot/", [("status", "done"), ("status", "zzz")], {"status": choice("zzz")}),
            # Every bad field at once, and before pagination is looked at (DRF filters first).
            ("/api/v1/video_separate/",
             {"status_code": "x", "recording_id": "y", "created_at_after": "z", "cursor": "!"},
             {"status_code": choice("x"), "recording_id": ["Enter a valid UUID."],
              "created_at_after": ["Enter a valid date/time."]}),
            ("/api/v1/bot/", {"status": "zzz", "page": "99"}, {"status": choice("zzz")}),
        ]  # fmt: skip
        for path, params, errors in cases:
            reply = await c.api(path, params)
            assert (reply.status, reply.json()) == (400, errors), (path, params)
        # Valid values that match nothing are an empty list, not an error.
        unknown = "00000000-0000-4000-8000-000000000000"
        empty = await c.api_json("/api/v1/video_separate/", {"recording_id": unknown})
        assert empty["results"] == []
        assert (await c.api_json("/api/v1/recording/", {"status_code": "paused"}))["results"] == []
        assert (await c.api_json("/api/v1/bot/", {"status": "media_expired"}))["count"] == 0


async def test_bot_list_filters_status_join_at_and_metadata() -> None:
    # Long phases spread over a long past: statuses differ between bots but barely move.
    config = UNLIMITED.replace(
        bots=40,
        time_scale=1.0,
        bot_lifecycle=Lifecycle(1000, 1000, 1000, 1000, 1000),
        created_at_spread_days=5000 / 86_400,
        page_size=100,
    )
    async with running(config) as c:
        statuses = ["joining_call", "in_call_recording", "call_ended", "done"]
        page = await c.api_json("/api/v1/bot/", [("status", s) for s in statuses])
        assert page["count"] == 40
        counts = {}
        for status in statuses:
            page = await c.api_json("/api/v1/bot/", {"status": status})
            counts[status] = page["count"]
            assert all(b["status_changes"][-1]["code"] == status for b in page["results"])
        assert all(counts.values())
        c.sim.add_bot(BotSpec(metadata={"team": "blue"}, participants=[ParticipantSpec(id=1)]))
        c.sim.add_bot(BotSpec(metadata={"team": "red"}, participants=[ParticipantSpec(id=1)]))
        blue = await c.api_json("/api/v1/bot/", {"metadata__team": "blue"})
        assert blue["count"] == 1
        assert blue["results"][0]["metadata"] == {"team": "blue"}
        cut = iso(c.sim.state.clock.now_us() - 2500 * 1_000_000)
        older = (await c.api_json("/api/v1/bot/", {"join_at_before": cut}))["count"]
        newer = (await c.api_json("/api/v1/bot/", {"join_at_after": cut}))["count"]
        assert older + newer == 42
        assert 0 < older < 42


async def test_auth_forms_and_errors() -> None:
    async with running() as c:
        url = f"{c.sim.api_url}/api/v1/bot/{c.sim.bot_ids[0]}/"
        assert (await c.get(url, auth="Token sim-key")).status == 200
        assert (await c.get(url, auth="sim-key")).status == 200
        # DRF: no credentials is NotAuthenticated; a key that matches nothing is a bad token.
        for auth in (None, "", "   "):
            reply = await c.get(url, auth=auth)
            assert reply.status == 401
            assert reply.json() == {"detail": "Authentication credentials were not provided."}
            assert reply.headers["WWW-Authenticate"] == "Token"
        for auth in ("Token nope", "nope", "Bearer sim-key", "Token "):
            reply = await c.get(url, auth=auth)
            assert reply.status == 401
            assert reply.json() == {"detail": "Invalid token."}
            assert reply.headers["WWW-Authenticate"] == "Token"
        for bad in ("00000000-0000-4000-8000-000000000000", "nope"):
            for kind in ("bot", "recording", "video_separate"):
                reply = await c.api(f"/api/v1/{kind}/{bad}/")
                assert (reply.status, reply.json()) == (404, {"detail": "Not found."})
        assert (await c.api("/api/v1/nothing/")).status == 404


async def test_missing_trailing_slash_redirects_and_counts() -> None:
    async with running() as c:
        reply = await c.api("/api/v1/video_separate", {"recording_id": "x"})
        assert reply.status == 301
        assert reply.headers["Location"] == "/api/v1/video_separate/?recording_id=x"
        reply = await c.api(f"/api/v1/bot/{c.sim.bot_ids[0]}")
        assert reply.status == 301
        assert c.sim.stats()["violations"]["missing_slash"] == 2


async def test_body_on_get_is_refused_by_the_waf() -> None:
    async with running() as c:
        reply = await c.api("/api/v1/bot/", data=b"{}")
        assert reply.status == 403
        assert reply.headers["Content-Type"].startswith("text/html")
        assert b"The request could not be satisfied" in reply.body
        assert c.sim.stats()["violations"]["body_on_get"] == 1


async def test_sliding_window_limit_retry_after_and_early_retry() -> None:
    config = FAST.replace(
        list_limit_per_min=3,
        retrieve_limit_per_min=100,
        rate_window_seconds=0.5,
        in_flight_grace_seconds=0.0,  # this client waits for each answer: nothing is in flight
    )
    async with running(config) as c:
        skipped = [0.0]
        c.sim.state.rate_clock = lambda: time.monotonic() + skipped[0]
        for _ in range(3):
            assert (await c.api("/api/v1/bot/")).status == 200
        refused = await c.api("/api/v1/bot/")
        assert refused.status == 429
        assert refused.headers["Retry-After"] == "1"
        assert refused.json() == {
            "detail": "Request was throttled. Expected available in 1 seconds."
        }
        early = await c.api("/api/v1/recording/")  # same class, before Retry-After
        assert early.status == 429
        assert (await c.api(f"/api/v1/bot/{c.sim.bot_ids[0]}/")).status == 200  # other class
        stats = c.sim.stats()
        assert stats["served_429"] == {"list": 2, "retrieve": 0}
        assert stats["violations"]["over_limit"] == 2
        assert stats["violations"]["early_retry"] == 1
        times = stats["api_request_times"]["list"]
        assert len(times) == 5
        assert times == sorted(times)
        skipped[0] += 1.0  # the Retry-After has passed, for the simulator's rate windows
        assert (await c.api("/api/v1/bot/")).status == 200
        assert c.sim.stats()["violations"]["early_retry"] == 1


async def test_api_faults_5xx_and_429() -> None:
    faults = FaultConfig(api_5xx=2, api_429=1, retry_after_seconds=3)
    async with running(FAST.replace(faults=faults)) as c:
        codes = [(await c.api("/api/v1/bot/")).status for _ in range(3)]
        assert all(code in (502, 503, 504) for code in codes[:2])
        assert codes[2] == 429
        stats = c.sim.stats()
        assert stats["faults_injected"] == {"api_5xx": 2, "api_429": 1}
        assert stats["served_429"]["list"] == 1
        assert stats["violations"]["over_limit"] == 0  # an injected 429 is not a client fault
        c.sim.set_faults(FaultConfig())
        c.sim.reset_stats()
        assert c.sim.stats()["faults_injected"] == {}


async def test_stats_endpoint_needs_no_auth() -> None:
    async with running() as c:
        await c.api("/api/v1/bot/")
        reply = await c.get(f"{c.sim.api_url}/_sim/stats")
        assert reply.status == 200
        stats = reply.json()
        assert stats["requests"]["bot_list"] == 1
        assert set(stats) >= {
            "requests", "served_429", "faults_injected", "media", "violations",
            "request_log_size", "api_request_times",
        }  # fmt: skip
        assert set(stats["media"]) == {
            "bytes_served_total", "bytes_served_per_part", "range_requests", "partial_responses",
            "range_ignored", "range_unsatisfiable", "full_requests", "concurrent_downloads", "max_concurrent_downloads", "max_concurrent_per_part",
            "completed_downloads_per_part",
        }  # fmt: skip
        assert set(stats["violations"]) == {
            "auth_to_media", "auth_to_manifest", "body_on_get", "missing_slash", "over_limit",
            "early_retry", "redirect_followed",
        }  # fmt: skip
