"""The manifest and media hosts over real sockets: parts JSON, MP4 bytes, Range, expiry, faults."""

from __future__ import annotations

import asyncio
import hashlib
import re
from typing import Any

import aiohttp
import pytest
from yarl import URL

from downloader.simulator import FaultConfig, top_level_boxes
from tests.simulator.helpers import FAST, Client, running

pytestmark = pytest.mark.anyio

PART_KEYS = {"id", "participant", "start_timestamp", "duration", "type", "download_url"}
PARTICIPANT_KEYS = {"id", "name", "is_host", "platform", "extra_data", "email"}


async def first_part(c: Client) -> dict[str, Any]:
    parts = await c.manifest(c.sim.recording_ids(c.sim.bot_ids[0])[0])
    return parts[0]


def xml_field(body: bytes, name: str) -> str:
    match = re.search(rf"<{name}>(.*?)</{name}>".encode(), body)
    assert match is not None, body
    return match.group(1).decode()


async def test_manifest_entries_follow_the_download_schema() -> None:
    async with running() as c:
        recording_id = c.sim.recording_ids(c.sim.bot_ids[0])[0]
        parts = await c.manifest(recording_id)
        assert len(parts) == 2 * 2 + 1  # two participants x two webcam parts + host screenshare
        assert [p["type"] for p in parts].count("screenshare") == 1
        for part in parts:
            assert set(part) == PART_KEYS
            assert set(part["participant"]) == PARTICIPANT_KEYS
            assert isinstance(part["participant"]["id"], int)
            assert set(part["start_timestamp"]) == {"absolute", "relative"}
            assert part["start_timestamp"]["relative"] >= 0
            assert part["duration"] > 0
            assert part["download_url"].startswith(c.sim.media_url + "/")
            assert "X-Amz-Signature=" in part["download_url"]
        assert parts == c.sim.parts(recording_id)
        assert [p["id"] for p in parts] == [p["id"] for p in c.sim.parts(recording_id)]
        assert len({p["id"] for p in parts}) == len(parts)


async def test_manifest_token_is_checked_and_auth_is_reported() -> None:
    async with running() as c:
        recording_id = c.sim.recording_ids(c.sim.bot_ids[0])[0]
        vs = await c.api_json("/api/v1/video_separate/", {"recording_id": recording_id})
        url = URL(vs["results"][0]["data"]["download_url"])
        tampered = url.update_query(token=url.query["token"][:-2] + "00")
        assert (await c.get(str(tampered))).status == 403
        assert (await c.get(str(url.with_query(None)))).status == 403
        with_auth = await c.get(str(url), auth=f"Token {c.sim.api_key}")
        assert with_auth.status == 200
        assert c.sim.stats()["violations"]["auth_to_manifest"] == 1
        c.sim.advance_time(FAST.url_ttl_seconds + 5)
        expired = await c.get(str(url))
        assert (expired.status, expired.json()) == (403, {"detail": "Token expired."})


async def test_full_get_serves_the_exact_valid_mp4() -> None:
    async with running() as c:
        part = await first_part(c)
        reply = await c.get(part["download_url"], headers={"Accept-Encoding": "gzip"})
        assert reply.status == 200
        assert reply.body == c.sim.part_content(part["id"])
        assert len(reply.body) == FAST.part_size
        assert hashlib.sha256(reply.body).hexdigest() == c.sim.part_sha256(part["id"])
        assert [box[0] for box in top_level_boxes(reply.body)] == ["ftyp", "mdat", "moov"]
        headers = reply.headers
        assert headers["Content-Type"] == "video/mp4"
        assert headers["Accept-Ranges"] == "bytes"
        assert headers["Content-Length"] == str(FAST.part_size)
        assert re.fullmatch(r'"[0-9a-f]{32}"', headers["ETag"])
        assert headers["Last-Modified"].endswith("GMT")
        assert "Content-Encoding" not in headers
        media = c.sim.stats()["media"]
        assert media["full_requests"] == 1
        assert media["bytes_served_per_part"] == {part["id"]: FAST.part_size}
        assert media["completed_downloads_per_part"] == {part["id"]: 1}


async def test_ranges_if_range_and_416() -> None:
    async with running() as c:
        part = await first_part(c)
        url, size = part["download_url"], FAST.part_size
        content = c.sim.part_content(part["id"])
        tail = await c.get(url, headers={"Range": "bytes=1000-"})
        assert tail.status == 206
        assert tail.headers["Content-Range"] == f"bytes 1000-{size - 1}/{size}"
        assert tail.body == content[1000:]
        etag = tail.headers["ETag"]
        middle = await c.get(url, headers={"Range": "bytes=10-19", "If-Range": etag})
        assert (middle.status, middle.body) == (206, content[10:20])
        stale = await c.get(url, headers={"Range": "bytes=10-19", "If-Range": '"0000"'})
        assert (stale.status, stale.body) == (200, content)
        beyond = await c.get(url, headers={"Range": f"bytes={size}-"})
        assert beyond.status == 416
        assert beyond.headers["Content-Range"] == f"bytes */{size}"
        head = await c.session.head(url)
        assert head.status == 200
        assert head.headers["Content-Length"] == str(size)
        head.release()
        stats = c.sim.stats()["media"]
        # Every request carrying Range counts, however it was answered.
        assert stats["range_requests"] == 4
        assert stats["partial_responses"] == 2
        assert stats["range_ignored"] == 1  # the If-Range mismatch, answered 200
        assert stats["range_unsatisfiable"] == 1
        assert stats["full_requests"] == 2  # the If-Range mismatch and the HEAD
        log = [e for e in c.sim.request_log() if e["host"] == "media"]
        assert [e["range"] for e in log[:2]] == ["bytes=1000-", "bytes=10-19"]


async def test_expired_url_gets_the_s3_expiry_body() -> None:
    async with running(FAST.replace(url_ttl_seconds=60)) as c:
        part = await first_part(c)
        c.sim.advance_time(61)
        reply = await c.get(part["download_url"])
        assert reply.status == 403
        assert reply.headers["Content-Type"] == "application/xml"
        assert reply.body.startswith(b'<?xml version="1.0" encoding="UTF-8"?>')
        assert xml_field(reply.body, "Code") == "AccessDenied"
        assert xml_field(reply.body, "Message") == "Request has expired"
        assert xml_field(reply.body, "X-Amz-Expires") == "60"
        for name in ("Expires", "ServerTime", "RequestId", "HostId"):
            assert xml_field(reply.body, name)
        assert xml_field(reply.body, "Expires") < xml_field(reply.body, "ServerTime")
        fresh = await first_part(c)
        assert fresh["id"] == part["id"]
        assert (await c.get(fresh["download_url"])).status == 200


async def test_tampered_signature_and_second_auth_mechanism() -> None:
    async with running() as c:
        part = await first_part(c)
        url = URL(part["download_url"])
        forged = url.update_query({"X-Amz-Expires": "604800"})
        reply = await c.get(str(forged))
        assert reply.status == 403
        assert xml_field(reply.body, "Code") == "AccessDenied"
        with_auth = await c.get(part["download_url"], auth=f"Token {c.sim.api_key}")
        assert with_auth.status == 400
        assert xml_field(with_auth.body, "Code") == "InvalidArgument"
        assert "Only one auth mechanism allowed" in xml_field(with_auth.body, "Message")
        assert c.sim.stats()["violations"]["auth_to_media"] == 1


async def test_truncate_closes_mid_body_then_recovers() -> None:
    async with running(FAST.replace(faults=FaultConfig(truncate=1), part_size=200_000)) as c:
        part = await first_part(c)
        async with c.session.get(part["download_url"]) as response:
            assert response.headers["Content-Length"] == "200000"
            with pytest.raises(aiohttp.ClientPayloadError):
                await response.read()
        served = c.sim.stats()["media"]["bytes_served_per_part"][part["id"]]
        assert 0 < served < 200_000
        assert (await c.get(part["download_url"])).body == c.sim.part_content(part["id"])
        assert c.sim.stats()["faults_injected"] == {"truncate": 1}


async def test_stall_stops_sending_then_closes() -> None:
    faults = FaultConfig(stall=1, stall_seconds=0.3)
    async with running(FAST.replace(faults=faults, part_size=100_000)) as c:
        part = await first_part(c)
        timeout = aiohttp.ClientTimeout(sock_read=0.1)
        with pytest.raises(asyncio.TimeoutError):
            async with c.session.get(part["download_url"], timeout=timeout) as response:
                await response.read()
        assert c.sim.stats()["faults_injected"] == {"stall": 1}


async def test_ignore_range_expire_and_5xx_faults() -> None:
    faults = FaultConfig(ignore_range=1, expire=1, media_5xx=1, manifest_5xx=1)
    async with running(FAST.replace(faults=faults)) as c:
        recording_id = c.sim.recording_ids(c.sim.bot_ids[0])[0]
        vs = await c.api_json("/api/v1/video_separate/", {"recording_id": recording_id})
        manifest_url = vs["results"][0]["data"]["download_url"]
        assert (await c.get(manifest_url)).status == 503
        part = (await c.get(manifest_url)).json()[0]
        url = part["download_url"]
        expired = await c.get(url)
        assert (expired.status, xml_field(expired.body, "Message")) == (403, "Request has expired")
        assert (await c.get(url)).status == 503
        ignored = await c.get(url, headers={"Range": "bytes=100-"})
        assert ignored.status == 200
        assert "Content-Range" not in ignored.headers
        assert len(ignored.body) == FAST.part_size
        assert (await c.get(url, headers={"Range": "bytes=100-"})).status == 206
        injected = c.sim.stats()["faults_injected"]
        assert injected == {"ignore_range": 1, "expire": 1, "media_5xx": 1, "manifest_5xx": 1}
        media = c.sim.stats()["media"]
        assert (media["range_requests"], media["partial_responses"]) == (2, 1)
        assert media["range_ignored"] == 1


async def test_range_requests_count_refused_ones_too() -> None:
    async with running(FAST.replace(url_ttl_seconds=60)) as c:
        url = (await first_part(c))["download_url"]
        c.sim.advance_time(61)
        expired = await c.get(url, headers={"Range": "bytes=100-"})
        assert expired.status == 403
        assert (await c.get(url)).status == 403  # no Range: not counted
        media = c.sim.stats()["media"]
        assert media["range_requests"] == 1
        assert media["partial_responses"] == media["full_requests"] == 0


async def test_etag_change_serves_a_new_version() -> None:
    async with running(FAST.replace(faults=FaultConfig(etag_change=1))) as c:
        part = await first_part(c)
        before = c.sim.part_content(part["id"])
        reply = await c.get(part["download_url"])
        assert reply.body != before
        assert reply.body == c.sim.part_content(part["id"])
        assert [box[0] for box in top_level_boxes(reply.body)] == ["ftyp", "mdat", "moov"]
        again = await c.get(
            part["download_url"], headers={"Range": "bytes=5-", "If-Range": reply.headers["ETag"]}
        )
        assert again.status == 206
        assert again.body == reply.body[5:]


async def test_redirect_fault_points_at_another_host_and_following_is_recorded() -> None:
    async with running(FAST.replace(faults=FaultConfig(redirect=2))) as c:
        part = await first_part(c)
        reply = await c.get(part["download_url"])
        assert reply.status == 302
        location = URL(reply.headers["Location"])
        assert (
            location.host != URL(c.sim.media_url).host or location.port != URL(c.sim.media_url).port
        )
        assert location.path == URL(part["download_url"]).path
        assert c.sim.stats()["violations"]["redirect_followed"] == 0
        followed = await c.get(part["download_url"], allow_redirects=True)
        assert followed.status == 200
        assert c.sim.stats()["violations"]["redirect_followed"] == 1


async def test_throttle_and_concurrency_maxima() -> None:
    config = FAST.replace(part_size=40_000, throttle_bytes_per_sec=200_000)
    async with running(config) as c:
        part = await first_part(c)
        loop = asyncio.get_running_loop()
        started = loop.time()
        replies = await asyncio.gather(*(c.get(part["download_url"]) for _ in range(3)))
        assert loop.time() - started >= 0.12  # 40 kB at 200 kB/s takes 0.15 s
        assert all(r.body == c.sim.part_content(part["id"]) for r in replies)
        media = c.sim.stats()["media"]
        assert media["max_concurrent_per_part"][part["id"]] == 3
        assert media["max_concurrent_downloads"] == 3
        assert media["completed_downloads_per_part"][part["id"]] == 3
