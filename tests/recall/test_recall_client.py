"""RecallClient against small scripted servers on real sockets (edge cases and hostile data)."""

from __future__ import annotations

import dataclasses
import datetime as dt
import email.utils
import io
import json
import logging
import re
import time
from typing import Any

import pytest
import stamina
import structlog
from aiohttp import web

from downloader.config import Secret, Settings
from downloader.errors import (
    AuthError,
    InvalidResponse,
    NetworkError,
    NotFound,
    RateLimited,
    RefreshUrl,
    RemoteRejected,
    ServerBusy,
    UnsafeUrl,
)
from downloader.logs import STDLIB_HANDLER_NAME, configure_logging
from downloader.recall import EndpointClass, RateLimiter, RecallClient, RetryPolicy
from tests.recall.fakeapi import FakeHost, hang, json_reply, raw_reply, sequence

KEY = "sk-VERY-SECRET-KEY-123"

BOT = {
    "id": "bot1",
    "meeting_url": {"meeting_id": "x", "platform": "zoom"},
    "status_changes": [
        {"code": "joining_call", "sub_code": None, "created_at": "2025-01-01T00:00:00Z"},
        {"code": "some_code_from_2030", "sub_code": "new", "created_at": "2025-01-01T01:00:00Z"},
    ],
    "recordings": [{"id": "rec1", "status": {"code": "brand_new", "updated_at": "t"}}],
    "an_unknown_field": {"nested": [1, 2]},
}


def vs(i: int, url: str | None = None) -> dict[str, Any]:
    return {
        "id": f"vs{i}",
        "recording": {"id": f"rec{i}", "metadata": {}},
        "created_at": "2025-01-01T00:00:00Z",
        "status": {"code": "done", "sub_code": None, "updated_at": "2025-01-01T00:00:00Z"},
        "metadata": {},
        "data": {"download_url": url},
        "format": "mp4",
    }


def part(i: int, url: str) -> dict[str, Any]:
    return {
        "id": f"p{i}",
        "participant": {"id": i, "name": "A", "is_host": True, "platform": "desktop"},
        "start_timestamp": {"absolute": "2025-01-01T00:00:00Z", "relative": 1.5},
        "duration": 10.0,
        "type": "webcam",
        "download_url": url,
    }


def make_settings(api: FakeHost, **changes: Any) -> Settings:
    base = Settings(
        api_key=Secret(KEY),
        api_url=api.url,
        region="eu-central-1",
        rate_window_seconds=1.0,
        api_timeout_seconds=2.0,
        connect_timeout_seconds=1.0,
    )
    return dataclasses.replace(base, **changes)


FAST = RetryPolicy(default_retry_after=0.05)


@pytest.mark.anyio
async def test_get_bot_sends_auth_no_body_and_a_slash(fake_api: FakeHost) -> None:
    fake_api.routes["/api/v1/bot/bot1/"] = json_reply(BOT)
    async with RecallClient.open(make_settings(fake_api)) as client:
        bot = await client.get_bot("bot1")
    assert bot.id == "bot1"
    assert bot.status is not None
    assert bot.status.code == "some_code_from_2030"  # last status_changes entry, unknown code
    assert bot.recordings[0].status is not None
    assert bot.recordings[0].status.code == "brand_new"
    [seen] = fake_api.seen
    assert seen.method == "GET"
    assert seen.path == "/api/v1/bot/bot1/"
    assert seen.headers["Authorization"] == f"Token {KEY}"
    assert seen.headers["Accept"] == "application/json"
    assert seen.body == b""
    assert "Content-Length" not in seen.headers or seen.headers["Content-Length"] == "0"
    assert "Transfer-Encoding" not in seen.headers


@pytest.mark.anyio
async def test_recording_carries_its_bot_id(fake_api: FakeHost) -> None:
    fake_api.routes["/api/v1/recording/rec1/"] = json_reply(
        {"id": "rec1", "bot": {"id": "bot1", "metadata": {}}, "status": {"code": "done"}}
    )
    async with RecallClient.open(make_settings(fake_api)) as client:
        rec = await client.get_recording("rec1")
    assert rec.bot_id == "bot1"


@pytest.mark.anyio
async def test_not_found_and_invalid_ids(fake_api: FakeHost) -> None:
    async with RecallClient.open(make_settings(fake_api)) as client:
        with pytest.raises(NotFound, match=r"^bot nope not found$"):
            await client.get_bot("nope")
        with pytest.raises(NotFound, match="not a valid Recall id"):
            await client.get_video_separate("../bot/x")
    assert fake_api.paths() == ["/api/v1/bot/nope/"]


@pytest.mark.anyio
async def test_401_is_an_auth_error_naming_region_without_the_key(fake_api: FakeHost) -> None:
    fake_api.routes["/api/v1/bot/b/"] = json_reply({"detail": "Invalid token."}, status=401)
    async with RecallClient.open(make_settings(fake_api)) as client:
        with pytest.raises(AuthError) as info:
            await client.get_bot("b")
    message = str(info.value)
    assert "eu-central-1" in message
    assert "127.0.0.1" in message
    assert KEY not in message
    assert len(fake_api.seen) == 1  # not retried


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("status", "body", "ctype", "match"),
    [
        (403, b"<HTML><TITLE>ERROR: The request could not be satisfied", "text/html", "firewall"),
        (400, b'{"detail": "cannot_command_completed_bot"}', "application/json", "cannot_command"),
        (402, b'{"detail": "Insufficient credit"}', "application/json", "HTTP 402"),
        (405, b'{"detail": "Method not allowed"}', "application/json", "HTTP 405"),
    ],
)
async def test_rejections(
    fake_api: FakeHost, status: int, body: bytes, ctype: str, match: str
) -> None:
    fake_api.routes["/api/v1/bot/b/"] = raw_reply(status, body, ctype)
    async with RecallClient.open(make_settings(fake_api)) as client:
        with pytest.raises(RemoteRejected, match=match):
            await client.get_bot("b")
    assert len(fake_api.seen) == 1


@pytest.mark.anyio
async def test_invalid_json_and_shapes(fake_api: FakeHost) -> None:
    fake_api.routes["/api/v1/bot/b/"] = raw_reply(200, b"<html>hi</html>", "text/html")
    fake_api.routes["/api/v1/bot/c/"] = json_reply({"no_id": True})
    fake_api.routes["/api/v1/bot/"] = json_reply({"results": "nope"})
    async with RecallClient.open(make_settings(fake_api)) as client:
        with pytest.raises(InvalidResponse, match="not valid JSON"):
            await client.get_bot("b")
        with pytest.raises(InvalidResponse, match="'id'"):
            await client.get_bot("c")
        with pytest.raises(InvalidResponse, match="results"):
            [b async for b in client.iter_bots()]


@pytest.mark.anyio
async def test_api_redirects_are_not_followed(fake_api: FakeHost) -> None:
    async def redirect(request: web.Request) -> web.StreamResponse:
        return web.Response(status=301, headers={"Location": "http://127.0.0.1:1/elsewhere/"})

    fake_api.routes["/api/v1/bot/b/"] = redirect
    async with RecallClient.open(make_settings(fake_api)) as client:
        with pytest.raises(InvalidResponse, match="redirect"):
            await client.get_bot("b")
    assert fake_api.paths() == ["/api/v1/bot/b/"]


@pytest.mark.anyio
@pytest.mark.parametrize("status", [409, 500, 502, 503, 504])
async def test_transient_errors_are_retried_then_succeed(fake_api: FakeHost, status: int) -> None:
    fail = raw_reply(status, b"busy", "text/plain")
    fake_api.routes["/api/v1/bot/b/"] = sequence(fail, fail, json_reply(BOT))
    async with RecallClient.open(make_settings(fake_api)) as client:
        bot = await client.get_bot("b")
        assert client.stats.retries == 2
    assert bot.id == "bot1"
    assert len(fake_api.seen) == 3


@pytest.mark.anyio
async def test_transient_errors_give_up_after_the_attempt_bound(fake_api: FakeHost) -> None:
    fake_api.routes["/api/v1/bot/b/"] = raw_reply(503, b"busy", "text/plain")
    async with RecallClient.open(make_settings(fake_api), retry=RetryPolicy(attempts=3)) as client:
        with pytest.raises(ServerBusy, match="HTTP 503"):
            await client.get_bot("b")
    assert len(fake_api.seen) == 3


@pytest.mark.anyio
async def test_network_errors_and_timeouts(fake_api: FakeHost) -> None:
    fake_api.routes["/api/v1/bot/slow/"] = hang(fake_api)
    settings = make_settings(fake_api, api_timeout_seconds=0.3)
    async with RecallClient.open(settings, retry=RetryPolicy(attempts=2)) as client:
        with pytest.raises(NetworkError, match="timed out"):
            await client.get_bot("slow")
    assert len(fake_api.seen) == 2
    refused = make_settings(fake_api, api_url="http://127.0.0.1:1")
    async with RecallClient.open(refused, retry=RetryPolicy(attempts=2)) as client:
        with pytest.raises(NetworkError, match="cannot connect") as info:
            await client.get_bot("b")
    assert info.value.__cause__ is None


@pytest.mark.anyio
async def test_429_pauses_the_class_then_retries_transparently(fake_api: FakeHost) -> None:
    limited = json_reply({"detail": "Request was throttled."}, status=429, **{"Retry-After": "0.4"})
    fake_api.routes["/api/v1/bot/b/"] = sequence(limited, json_reply(BOT))
    fake_api.routes["/api/v1/bot/"] = json_reply({"count": 0, "next": None, "results": []})
    async with RecallClient.open(make_settings(fake_api)) as client:
        bot = await client.get_bot("b")
        assert bot.id == "bot1"
        assert client.stats.rate_limited[EndpointClass.RETRIEVE] == 1
        assert client.stats.retries == 0  # not counted against the 5xx/network attempts
        assert client.limiter.pauses[EndpointClass.RETRIEVE] == 1
        # The other class was never paused.
        assert await client.limiter.paused_for(EndpointClass.LIST) == 0
    first, second = fake_api.seen
    assert second.t - first.t >= 0.4


@pytest.mark.anyio
async def test_429_without_retry_after_uses_the_default(fake_api: FakeHost) -> None:
    fake_api.routes["/api/v1/bot/b/"] = sequence(
        json_reply({"detail": "throttled"}, status=429), json_reply(BOT)
    )
    async with RecallClient.open(make_settings(fake_api), retry=FAST) as client:
        await client.get_bot("b")
    first, second = fake_api.seen
    assert second.t - first.t >= 0.05


@pytest.mark.anyio
async def test_429_is_bounded(fake_api: FakeHost) -> None:
    limited = json_reply({"detail": "throttled"}, status=429, **{"Retry-After": "0"})
    fake_api.routes["/api/v1/bot/b/"] = limited
    policy = RetryPolicy(max_rate_limited=2)
    async with RecallClient.open(make_settings(fake_api), retry=policy) as client:
        with pytest.raises(RateLimited, match="3 times"):
            await client.get_bot("b")
    assert len(fake_api.seen) == 3


@pytest.mark.anyio
async def test_a_long_retry_after_is_handed_to_the_job_layer(fake_api: FakeHost) -> None:
    limited = json_reply({"detail": "throttled"}, status=429, **{"Retry-After": "3600"})
    fake_api.routes["/api/v1/bot/b/"] = limited
    async with RecallClient.open(make_settings(fake_api)) as client:
        with pytest.raises(RateLimited) as info:
            await client.get_bot("b")
        assert info.value.retry_after == 3600
        assert await client.limiter.paused_for(EndpointClass.RETRIEVE) > 3000
    assert len(fake_api.seen) == 1


@pytest.mark.anyio
@pytest.mark.parametrize("status", [409, 500, 503])
async def test_a_5xx_retry_after_beyond_the_call_budget_goes_to_the_job_layer(
    fake_api: FakeHost, status: int
) -> None:
    """Retry-After honoured: not shortened to wait_max, but handed on with its value."""
    busy = json_reply({"detail": "busy"}, status=status, **{"Retry-After": "60"})
    fake_api.routes["/api/v1/bot/b/"] = sequence(busy, json_reply(BOT))
    async with RecallClient.open(make_settings(fake_api)) as client:
        with pytest.raises(ServerBusy) as info:
            await client.get_bot("b")
        assert client.stats.retries == 0
    assert info.value.retry_after == 60
    assert len(fake_api.seen) == 1  # no retry inside the call before the server's time


@pytest.mark.anyio
async def test_a_5xx_retry_after_as_an_http_date_goes_to_the_job_layer(
    fake_api: FakeHost,
) -> None:
    later = email.utils.format_datetime(dt.datetime.now(dt.UTC) + dt.timedelta(minutes=5), True)
    busy = raw_reply(503, b"", "text/plain", **{"Retry-After": later})
    fake_api.routes["/api/v1/bot/b/"] = busy
    async with RecallClient.open(make_settings(fake_api)) as client:
        with pytest.raises(ServerBusy) as info:
            await client.get_bot("b")
    assert info.value.retry_after is not None and info.value.retry_after > 200
    assert len(fake_api.seen) == 1


@pytest.mark.anyio
async def test_a_short_5xx_retry_after_is_waited_in_the_call(fake_api: FakeHost) -> None:
    busy = raw_reply(503, b"", "text/plain", **{"Retry-After": "0.4"})
    fake_api.routes["/api/v1/bot/b/"] = sequence(busy, json_reply(BOT))
    with stamina.set_testing(False):  # real waits: the gap is the server's, not our backoff
        async with RecallClient.open(make_settings(fake_api)) as client:
            assert (await client.get_bot("b")).id == "bot1"
            assert client.stats.retries == 1
    first, second = fake_api.seen
    assert second.t - first.t >= 0.4


@pytest.mark.anyio
async def test_a_manifest_429_retry_after_beyond_the_budget_goes_to_the_job_layer(
    fake_api: FakeHost, fake_other: FakeHost
) -> None:
    limited = raw_reply(429, b"slow down", "text/plain", **{"Retry-After": "60"})
    fake_other.routes["/m"] = sequence(limited, json_reply([]))
    async with RecallClient.open(make_settings(fake_api)) as client:
        with pytest.raises(ServerBusy) as info:
            await client.fetch_manifest(fake_other.at("/m?token=t"))
    assert info.value.retry_after == 60
    assert len(fake_other.seen) == 1


@pytest.mark.anyio
async def test_one_snake_case_log_line_per_retry(fake_api: FakeHost) -> None:
    """stamina's own "stamina.retry_scheduled" is off once logging is configured."""
    fail = raw_reply(502, b"", "text/plain")
    fake_api.routes["/api/v1/bot/b/"] = sequence(fail, fail, json_reply(BOT))
    stream = io.StringIO()
    root = logging.getLogger()
    level = root.level
    try:
        configure_logging("info", "json", stream=stream)
        async with RecallClient.open(make_settings(fake_api)) as client:
            await client.get_bot("b")
    finally:
        for handler in [h for h in root.handlers if h.get_name() == STDLIB_HANDLER_NAME]:
            root.removeHandler(handler)
        root.setLevel(level)
        stamina.instrumentation.set_on_retry_hooks(None)
        structlog.reset_defaults()
    events = [json.loads(line)["event"] for line in stream.getvalue().splitlines()]
    assert events == ["api_retry", "api_retry"]
    assert all(re.fullmatch(r"[a-z][a-z0-9_]*", event) for event in events)


@pytest.mark.anyio
async def test_page_number_pagination_followed_to_the_end(fake_api: FakeHost) -> None:
    base = fake_api.url

    async def bots(request: web.Request) -> web.StreamResponse:
        page = int(request.query.get("page", "1"))
        ids = {1: ["a", "b"], 2: ["b", "c"], 3: ["d"]}[page]  # "b" shifted onto page 2
        nxt = f"{base}/api/v1/bot/?{request.query_string}&page={page + 1}" if page < 3 else None
        if page > 1:
            nxt = nxt and nxt.replace(f"&page={page}&", "&")
        return web.json_response(
            {"count": 5, "next": nxt, "previous": None, "results": [{"id": i} for i in ids]}
        )

    fake_api.routes["/api/v1/bot/"] = bots
    async with RecallClient.open(make_settings(fake_api)) as client:
        found = [
            b.id
            async for b in client.iter_bots(status=["done", "fatal"], metadata={"customer": "acme"})
        ]
    assert found == ["a", "b", "c", "d"]
    assert len(fake_api.seen) == 3
    first = fake_api.seen[0]
    assert first.query == "status=done&status=fatal&metadata__customer=acme"
    assert all(s.path == "/api/v1/bot/" for s in fake_api.seen)


@pytest.mark.anyio
async def test_cursor_pages_and_resume(fake_api: FakeHost) -> None:
    base = fake_api.url
    pages = {
        "": ([vs(1), vs(2)], "c2"),
        "c2": ([vs(3)], "c3%3D"),
        "c3=": ([vs(4)], None),
    }

    async def listing(request: web.Request) -> web.StreamResponse:
        items, nxt = pages[request.query.get("cursor", "")]
        link = None if nxt is None else f"{base}/api/v1/video_separate/?cursor={nxt}&recording_id=r"
        return web.json_response({"next": link, "previous": None, "results": items})

    fake_api.routes["/api/v1/video_separate/"] = listing
    async with RecallClient.open(make_settings(fake_api)) as client:
        found = [v.id async for v in client.iter_video_separates(recording_id="r")]
        assert found == ["vs1", "vs2", "vs3", "vs4"]
        items, nxt = await client.video_separate_page(recording_id="r")
        assert [v.id for v in items] == ["vs1", "vs2"]
        assert nxt is not None
        items, nxt = await client.video_separate_page(cursor_url=nxt)
        assert [v.id for v in items] == ["vs3"]
        assert nxt is not None
        items, nxt = await client.video_separate_page(cursor_url=nxt)
        assert [v.id for v in items] == ["vs4"]
        assert nxt is None
        with pytest.raises(InvalidResponse):
            await client.video_separate_page(
                cursor_url="https://evil.example/api/v1/video_separate/"
            )
    assert fake_api.seen[0].query == "recording_id=r"


@pytest.mark.anyio
async def test_next_links_off_the_api_host_and_loops_are_refused(
    fake_api: FakeHost, fake_other: FakeHost
) -> None:
    fake_api.routes["/api/v1/recording/"] = json_reply(
        {"next": fake_other.at("/api/v1/recording/?cursor=x"), "results": [{"id": "r1"}]}
    )
    loop_link = fake_api.at("/api/v1/video_separate/?cursor=same")
    fake_api.routes["/api/v1/video_separate/"] = json_reply({"next": loop_link, "results": []})
    async with RecallClient.open(make_settings(fake_api)) as client:
        with pytest.raises(InvalidResponse, match="outside the API host"):
            [r async for r in client.iter_recordings(bot_id="b")]
        with pytest.raises(InvalidResponse, match="loops"):
            [v async for v in client.iter_video_separates()]
    assert fake_other.seen == []


@pytest.mark.anyio
async def test_manifest_is_fetched_without_credentials(
    fake_api: FakeHost, fake_other: FakeHost
) -> None:
    media = "https://recallai-production-bot-data.s3.amazonaws.com/x.mp4?Signature=s"
    fake_other.routes["/manifest"] = json_reply([part(1, media), part(2, media)])
    async with RecallClient.open(make_settings(fake_api)) as client:
        parts = await client.fetch_manifest(fake_other.at("/manifest?token=SECRET-TOKEN"))
    assert [p.id for p in parts] == ["p1", "p2"]
    [seen] = fake_other.seen
    assert "Authorization" not in seen.headers
    assert seen.query == "token=SECRET-TOKEN"
    assert fake_api.seen == []


@pytest.mark.anyio
async def test_manifest_url_policy_and_redirect_hops(
    fake_api: FakeHost, fake_other: FakeHost
) -> None:
    fake_other.routes["/ok"] = json_reply([])

    async def hop_ok(request: web.Request) -> web.StreamResponse:
        return web.Response(status=302, headers={"Location": "/ok"})

    async def hop_bad(request: web.Request) -> web.StreamResponse:
        return web.Response(status=302, headers={"Location": "https://evil.example/x?t=1"})

    fake_other.routes["/hop-ok"] = hop_ok
    fake_other.routes["/hop-bad"] = hop_bad
    async with RecallClient.open(make_settings(fake_api)) as client:
        assert await client.fetch_manifest(fake_other.at("/hop-ok")) == []
        with pytest.raises(UnsafeUrl, match=r"evil\.example"):
            await client.fetch_manifest(fake_other.at("/hop-bad"))
        for bad in (
            "https://evil.example/manifest?token=t",
            "http://s3.amazonaws.com/manifest",
            "ftp://127.0.0.1/x",
            "https://10.0.0.1/x",
        ):
            with pytest.raises(UnsafeUrl) as info:
                await client.fetch_manifest(bad)
            assert "token=t" not in str(info.value)
    assert fake_other.paths() == ["/hop-ok", "/ok", "/hop-bad"]


@pytest.mark.anyio
async def test_manifest_errors(fake_api: FakeHost, fake_other: FakeHost) -> None:
    expired = b"<Error><Code>AccessDenied</Code><Message>Request has expired</Message></Error>"
    fake_other.routes["/expired"] = raw_reply(403, expired, "application/xml")
    fake_other.routes["/flaky"] = sequence(raw_reply(503, b"", "text/plain"), json_reply([]))
    fake_other.routes["/html"] = raw_reply(200, b"<html/>", "text/html")
    fake_other.routes["/object"] = json_reply({"parts": []})
    async with RecallClient.open(make_settings(fake_api)) as client:
        with pytest.raises(RefreshUrl):
            await client.fetch_manifest(fake_other.at("/expired?X-Amz-Signature=abc"))
        assert await client.fetch_manifest(fake_other.at("/flaky")) == []
        with pytest.raises(InvalidResponse, match="not valid JSON"):
            await client.fetch_manifest(fake_other.at("/html"))
        with pytest.raises(InvalidResponse, match="array"):
            await client.fetch_manifest(fake_other.at("/object"))
        with pytest.raises(NotFound):
            await client.fetch_manifest(fake_other.at("/missing"))


@pytest.mark.anyio
async def test_logs_never_carry_the_key_or_query_strings(
    fake_api: FakeHost, fake_other: FakeHost
) -> None:
    fake_api.routes["/api/v1/bot/b/"] = sequence(
        raw_reply(502, b"", "text/plain"),
        json_reply({}, status=429, **{"Retry-After": "0"}),
        json_reply(BOT),
    )
    fake_other.routes["/m"] = sequence(raw_reply(500, b"", "text/plain"), json_reply([]))
    with structlog.testing.capture_logs() as logs:
        async with RecallClient.open(make_settings(fake_api)) as client:
            await client.get_bot("b")
            await client.fetch_manifest(fake_other.at("/m?token=TOPSECRET"))
    events = {entry["event"] for entry in logs}
    assert {"api_retry", "api_rate_limited"} <= events
    text = repr(logs)
    assert KEY not in text
    assert "TOPSECRET" not in text


@pytest.mark.anyio
async def test_rate_limit_holds_at_the_server(fake_api: FakeHost) -> None:
    """12 concurrent list calls, 4 per 0.5 s window: arrivals never exceed the limit."""
    fake_api.routes["/api/v1/recording/"] = json_reply({"next": None, "results": []})
    settings = make_settings(fake_api, list_rate_limit=4, rate_window_seconds=0.5)
    started = time.monotonic()
    async with RecallClient.open(settings) as client:
        import anyio

        async def one() -> None:
            [r async for r in client.iter_recordings()]

        async with anyio.create_task_group() as tg:
            for _ in range(12):
                tg.start_soon(one)
    times = sorted(s.t for s in fake_api.seen)
    assert len(times) == 12
    assert all(times[i + 4] - times[i] >= 0.5 for i in range(len(times) - 4))
    assert time.monotonic() - started >= 1.0


@pytest.mark.anyio
async def test_a_shared_limiter_is_used_as_given(fake_api: FakeHost) -> None:
    limiter = RateLimiter({EndpointClass.LIST: 2, EndpointClass.RETRIEVE: 2}, 5.0)
    fake_api.routes["/api/v1/bot/b/"] = json_reply(BOT)
    async with RecallClient.open(make_settings(fake_api), limiter) as one:
        assert one.limiter is limiter
        await one.get_bot("b")
    async with RecallClient.open(make_settings(fake_api), limiter) as two:
        await two.get_bot("b")
    assert limiter.acquired[EndpointClass.RETRIEVE] == 2
