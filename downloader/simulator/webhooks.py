"""Standard-Webhooks-signed event delivery: ``bot.<code>``, ``recording.done``,
``video_separate.done`` / ``.failed`` (payloads as in recall-api.md §7).

Events are derived from the same lifecycle plans the API serves, so a webhook never
announces a state the API would not show. Which events are sent:

* bots added at run time (``add_bot``, arrivals): all their events, none earlier than the bot's
  registration (a ``time_scale=0`` bot announces its whole life at once);
* generated bots: events from the simulator's start on; with ``created_at_spread_days = 0``
  the generated bots are "born with the simulator", so their whole history is sent too,
  while spread-out bots belong to the past and only their future events are sent.

Delivery is best-effort: each message is retried a few times with the same ``webhook-id``
(as Svix does), on a compressed schedule.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import heapq
import hmac
import itertools
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import aiohttp

from .clock import iso
from .queries import first_true
from .state import SimState
from .world import BotEntry, RecordingEntry

TICK_SECONDS = 0.05
RETRY_DELAYS = (0.0, 0.5, 1.0, 2.0)
DELIVERY_CONCURRENCY = 8
REQUEST_TIMEOUT = aiohttp.ClientTimeout(total=15)  # Recall expects an answer within 15 s


@dataclass(frozen=True, order=True)
class _Template:
    """One event in an ordinary bot's plan: offset from the bot's start."""

    offset: int
    kind: str  # "bot" | "recording" | "video_separate"
    index: int  # status change index, or recording index


def sign(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """``v1,<base64 HMAC-SHA256>`` of ``"{id}.{timestamp}.{body}"`` with the decoded secret."""
    key = base64.b64decode(secret.removeprefix("whsec_"))
    content = f"{msg_id}.{timestamp}.".encode() + body
    return "v1," + base64.b64encode(hmac.new(key, content, hashlib.sha256).digest()).decode()


class WebhookSender:
    def __init__(self, state: SimState) -> None:
        self.state = state
        self._session: aiohttp.ClientSession | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._limit = asyncio.Semaphore(DELIVERY_CONCURRENCY)
        self._heap: list[tuple[int, int, str, BotEntry, int]] = []
        self._order = itertools.count()
        self._added_seen = 0
        self._templates = self._ordinary_templates()
        self._next: list[int] = []
        self.delivered: list[dict[str, Any]] = []

    # ---- lifecycle --------------------------------------------------------------------------

    async def start(self) -> None:
        self._session = aiohttp.ClientSession(timeout=REQUEST_TIMEOUT)
        world, config = self.state.world, self.state.config
        born = config.created_at_spread_days == 0
        threshold = world.ordinary_start_us(0) if born else self.state.clock.start_us
        self._next = [
            first_true(0, world.ordinary_count, self._reaches(t.offset, threshold))
            for t in self._templates
        ]
        self._tasks.add(asyncio.create_task(self._run()))

    def _reaches(self, offset: int, threshold: int) -> Callable[[int], bool]:
        world = self.state.world

        def reached(index: int) -> bool:
            return world.ordinary_start_us(index) + offset >= threshold

        return reached

    async def stop(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def _run(self) -> None:
        while True:
            for bot, kind, index in self._due(self.state.clock.now_us()):
                self._spawn(self._event(bot, kind, index))
            await asyncio.sleep(TICK_SECONDS)

    def _spawn(self, payload: dict[str, Any]) -> None:
        task = asyncio.create_task(self._deliver(payload))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # ---- which events are due ---------------------------------------------------------------

    def _ordinary_templates(self) -> list[_Template]:
        plan = self.state.world.ordinary_plan
        return sorted(self._templates_of(plan.status_changes, plan.recordings))

    @staticmethod
    def _templates_of(changes: Any, recordings: Any) -> list[_Template]:
        out = [_Template(c.at, "bot", k) for k, c in enumerate(changes)]
        for j, rec in enumerate(recordings):
            out.append(_Template(rec.done, "recording", j))
            if rec.vs_finished is not None:
                out.append(_Template(rec.vs_finished, "video_separate", j))
        return out

    def _due(self, now: int) -> list[tuple[BotEntry, str, int]]:
        world = self.state.world
        due: list[tuple[BotEntry, str, int]] = []
        for k, template in enumerate(self._templates):
            while (
                self._next[k] < world.ordinary_count
                and world.ordinary_start_us(self._next[k]) + template.offset <= now
            ):
                due.append((world.ordinary_bot(self._next[k]), template.kind, template.index))
                self._next[k] += 1
        for bot in world.added[self._added_seen :]:
            for t in self._templates_of(bot.plan.status_changes, bot.plan.recordings):
                at = max(bot.start_us + t.offset, bot.registered_us)
                heapq.heappush(self._heap, (at, next(self._order), t.kind, bot, t.index))
        self._added_seen = len(world.added)
        while self._heap and self._heap[0][0] <= now:
            _, _, kind, bot, index = heapq.heappop(self._heap)
            due.append((bot, kind, index))
        return due

    # ---- payloads and delivery --------------------------------------------------------------

    def _event(self, bot: BotEntry, kind: str, index: int) -> dict[str, Any]:
        bot_ref = {"id": bot.id, "metadata": dict(bot.spec.metadata)}
        if kind == "bot":
            change = bot.plan.status_changes[index]
            status = {
                "code": change.code,
                "sub_code": change.sub_code,
                "updated_at": iso(bot.start_us + change.at),
            }
            return {"event": f"bot.{change.code}", "data": {"data": status, "bot": bot_ref}}
        rec = self.state.world.recording(bot, index)
        rec_ref = {"id": rec.id, "metadata": {}}
        if kind == "recording":
            status = {"code": "done", "sub_code": None, "updated_at": iso(rec.done_us)}
            data = {"data": status, "recording": rec_ref, "bot": bot_ref}
            return {"event": "recording.done", "data": data}
        return self._video_separate_event(rec, rec_ref, bot_ref)

    def _video_separate_event(
        self, rec: RecordingEntry, rec_ref: dict[str, Any], bot_ref: dict[str, Any]
    ) -> dict[str, Any]:
        finished = rec.vs_finished_us
        assert finished is not None
        code, sub_code, updated = rec.vs_status(finished)
        data = {
            "data": {"code": code, "sub_code": sub_code, "updated_at": iso(updated)},
            "video_separate": {"id": rec.video_separate_id, "metadata": {}},
            "recording": rec_ref,
            "bot": bot_ref,
        }
        return {"event": f"video_separate.{code}", "data": data}

    async def _deliver(self, payload: dict[str, Any]) -> None:
        config, stats = self.state.config, self.state.stats
        assert config.webhook_url
        assert config.webhook_secret
        assert self._session is not None
        body = json.dumps(payload).encode()
        msg_id = (
            "msg_" + hashlib.sha256(f"{config.seed}:{next(self._order)}".encode()).hexdigest()[:24]
        )
        async with self._limit:
            for delay in RETRY_DELAYS:
                await asyncio.sleep(delay)
                timestamp = int(time.time())  # real time: receivers check it against their clock
                headers = {
                    "Content-Type": "application/json",
                    "webhook-id": msg_id,
                    "webhook-timestamp": str(timestamp),
                    "webhook-signature": sign(config.webhook_secret, msg_id, timestamp, body),
                }
                stats.webhooks["sent"] += 1
                try:
                    async with self._session.post(
                        config.webhook_url, data=body, headers=headers
                    ) as r:
                        if 200 <= r.status < 300:
                            stats.webhooks["delivered"] += 1
                            self.delivered.append(payload)
                            return
                except (aiohttp.ClientError, TimeoutError):
                    pass
        stats.webhooks["failed"] += 1
