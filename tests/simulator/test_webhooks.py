"""Signed webhooks delivered to a real receiver, verified with the standardwebhooks library."""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import pytest
from aiohttp import web
from standardwebhooks import Webhook

from downloader.simulator import BotSpec, Lifecycle, ParticipantSpec, Simulator
from tests.simulator.helpers import FAST

pytestmark = pytest.mark.anyio

SECRET = "whsec_" + base64.b64encode(b"simulator-test-secret-0123456789").decode()


class Receiver:
    """Collects verified events; answers 500 to the first ``failures`` deliveries."""

    def __init__(self, failures: int = 0) -> None:
        self.events: list[dict[str, Any]] = []
        self.ids: list[str] = []
        self.failures = failures
        self.changed = asyncio.Event()

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        payload = Webhook(SECRET).verify(body, dict(request.headers))
        self.ids.append(request.headers["webhook-id"])
        if self.failures:
            self.failures -= 1
            return web.Response(status=500)
        self.events.append(payload)
        self.changed.set()
        return web.Response(status=204)

    async def wait_for(self, count: int) -> None:
        with anyio.fail_after(10):
            while len(self.events) < count:
                self.changed.clear()
                await self.changed.wait()


@asynccontextmanager
async def receiver(failures: int = 0) -> AsyncIterator[tuple[Receiver, str]]:
    sink = Receiver(failures)
    app = web.Application()
    app.router.add_post("/hook", sink.handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield sink, f"http://127.0.0.1:{runner.addresses[0][1]}/hook"
    finally:
        await runner.cleanup()


async def test_added_bot_announces_its_life_in_order() -> None:
    async with receiver(failures=1) as (sink, url):
        config = FAST.replace(bots=0, webhook_url=url, webhook_secret=SECRET)
        async with Simulator(config) as sim:
            bot_id = sim.add_bot(
                BotSpec(participants=[ParticipantSpec(id=1)], metadata={"team": "blue"})
            )
            await sink.wait_for(6)
            stats = sim.stats()["webhooks"]
        # Delivery order is not guaranteed (nor is it by Svix); the timestamps tell the story.
        ordered = sorted(sink.events, key=lambda e: (e["data"]["data"]["updated_at"], e["event"]))
        assert [e["event"] for e in ordered] == [
            "bot.joining_call",
            "bot.in_call_recording",
            "bot.call_ended",
            "bot.done",
            "recording.done",
            "video_separate.done",
        ]
        assert sink.ids.count(sink.ids[0]) == 2  # the retry kept its message id
        assert stats["sent"] == 7  # six events, one of them twice
        assert stats["failed"] == 0
        done = next(e for e in sink.events if e["event"] == "video_separate.done")
        assert done["data"]["bot"] == {"id": bot_id, "metadata": {"team": "blue"}}
        assert done["data"]["recording"]["id"] == sim.recording_ids(bot_id)[0]
        assert set(done["data"]["data"]) == {"code", "sub_code", "updated_at"}
        assert set(done["data"]["video_separate"]) == {"id", "metadata"}


async def test_generated_bots_send_events_as_they_happen() -> None:
    async with receiver() as (sink, url):
        config = FAST.replace(
            bots=1,
            time_scale=1.0,
            bot_lifecycle=Lifecycle(100, 100, 100, 100, 100),
            webhook_url=url,
            webhook_secret=SECRET,
        )
        async with Simulator(config) as sim:
            await sink.wait_for(1)
            assert [e["event"] for e in sink.events] == ["bot.joining_call"]
            sim.advance_time(1000)
            await sink.wait_for(6)
            failed_bot = sim.add_bot(
                BotSpec(outcome="video_separate_failed", lifecycle=(0, 0, 0, 0))
            )
            await sink.wait_for(12)
        failed = [e for e in sink.events if e["event"] == "video_separate.failed"]
        assert failed[0]["data"]["bot"]["id"] == failed_bot
        assert failed[0]["data"]["data"]["sub_code"] == "video_separate_processing_failed"
        assert json.dumps(sink.events)  # plain JSON throughout
