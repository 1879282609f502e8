"""Recall webhooks: verify (Standard Webhooks, via the ``standardwebhooks`` library), map to jobs.

Verification is the library's; this module only adapts to Recall: the legacy Svix header
family (``svix-id``/``svix-timestamp``/``svix-signature``) is renamed to the
``webhook-*`` family before verifying, and the library's one exception is split into the
answers a sender can act on:

* 401 — headers missing, or no signature in the header matches (forged, wrong secret);
* 400 — the timestamp is outside ±5 minutes (a replay or a badly skewed clock), the headers
  are malformed, or the verified body is not the JSON we expect.

Webhooks are hints: every event becomes a job that reads the real state from the API, so a
duplicate, a reordering or a lie about a status cannot corrupt anything.

Events (recall-api.md §7) and the job each one queues:

=============================================  =========================================
``bot.done``, ``bot.fatal``,                   ``poll_bot`` for the bot (a failed poll_bot
legacy ``bot.status_change`` (done / fatal)    is re-armed by ``bot.done``)
``recording.done``                             ``resolve_recording`` for the recording
``video_separate.done`` / ``.failed``          ``resolve_recording`` for its recording
anything else                                  nothing (answered 2xx and ignored)
=============================================  =========================================

A recording without a bot (``"bot": null``, e.g. from the Desktop SDK) is filed under the
bot id :data:`NO_BOT`, so its files land in ``<out>/no-bot/<recording_id>/``.
"""

from __future__ import annotations

import binascii
import json
from collections.abc import Mapping
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Any

from standardwebhooks import Webhook, WebhookVerificationError

from downloader.config import Secret
from downloader.errors import ConfigError
from downloader.lifecycle import JobKind, JobState, job_id
from downloader.naming import canonical_id
from downloader.store.protocol import JobStore, NewJob, OnConflict

NO_BOT = "no-bot"
HEADER_NAMES = ("id", "timestamp", "signature")
FAMILIES = ("webhook", "svix")  # tried in this order
MAX_ID_CHARS = 128
BOT_POLL_EVENTS = frozenset({"bot.done", "bot.fatal"})
LEGACY_BOT_EVENT = "bot.status_change"
LEGACY_POLL_CODES = frozenset({"done", "fatal"})
RECORDING_EVENTS = frozenset({"recording.done", "video_separate.done", "video_separate.failed"})


class Outcome(StrEnum):
    """What happened to one delivery (the ``outcome`` label of the deliveries metric)."""

    ENQUEUED = "enqueued"  # verified, new, its job(s) durably queued
    DUPLICATE = "duplicate"  # verified, the same message id was handled before
    IGNORED = "ignored"  # verified, an event we do not act on
    UNAUTHORIZED = "unauthorized"  # missing headers or no matching signature
    STALE = "stale"  # timestamp outside the tolerance
    MALFORMED = "malformed"  # bad headers, or a verified body that is not what we expect
    ERROR = "error"  # the store failed: answered 5xx so the sender retries


class Rejected(Exception):
    """The request is refused; nothing was changed."""

    def __init__(self, status: int, outcome: Outcome, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.outcome = outcome
        self.reason = reason


@dataclass(frozen=True)
class Verified:
    message_id: str
    event: str
    body: Mapping[str, Any]


@dataclass(frozen=True)
class Action:
    """The jobs an event asks for; ``rearm_failed_poll`` re-arms a failed poll_bot."""

    jobs: tuple[NewJob, ...]
    rearm_failed_poll: bool = False


class Verifier:
    """Checks signatures with one workspace secret (``whsec_…``)."""

    def __init__(self, secret: Secret) -> None:
        try:
            self._webhook = Webhook(secret.reveal())
        except Exception as exc:  # the library raises several types for a bad secret
            raise ConfigError(
                f"webhook_secret is not a Standard Webhooks secret (whsec_<base64>): "
                f"{type(exc).__name__}"
            ) from None

    def verify(self, body: bytes, headers: Mapping[str, str]) -> Verified:
        lowered = {k.lower(): v for k, v in headers.items()}
        candidates = [_family(lowered, f) for f in FAMILIES]
        present = [c for c in candidates if c is not None]
        if not present:
            raise Rejected(401, Outcome.UNAUTHORIZED, "missing webhook signature headers")
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError:
            raise Rejected(400, Outcome.MALFORMED, "body is not UTF-8") from None
        first: Rejected | None = None
        for standard in present:
            try:
                self._webhook.verify(text, standard, json_parse=False)
            except Rejected as exc:
                first = first or exc
            except WebhookVerificationError as exc:
                first = first or _classify(str(exc))
            except (ValueError, binascii.Error):  # "v1sig" without a comma, bad base64
                first = first or Rejected(401, Outcome.UNAUTHORIZED, "malformed signature")
            else:
                return _parse(standard["webhook-id"], body)
        assert first is not None
        raise first


def _family(headers: Mapping[str, str], family: str) -> dict[str, str] | None:
    values = {name: headers.get(f"{family}-{name}", "").strip() for name in HEADER_NAMES}
    if not all(values.values()):
        return None
    return {f"webhook-{name}": value for name, value in values.items()}


def _classify(message: str) -> Rejected:
    lowered = message.lower()
    if "too old" in lowered or "too new" in lowered:
        return Rejected(400, Outcome.STALE, "timestamp outside the 5-minute tolerance")
    if "invalid signature headers" in lowered:
        return Rejected(400, Outcome.MALFORMED, "malformed webhook-timestamp header")
    return Rejected(401, Outcome.UNAUTHORIZED, "no matching signature")


def _parse(message_id: str, body: bytes) -> Verified:
    if len(message_id) > MAX_ID_CHARS:
        raise Rejected(400, Outcome.MALFORMED, "webhook-id is too long")
    try:
        data = json.loads(body)
    except ValueError:
        raise Rejected(400, Outcome.MALFORMED, "body is not valid JSON") from None
    if not isinstance(data, dict) or not isinstance(data.get("event"), str):
        raise Rejected(400, Outcome.MALFORMED, "body has no event name")
    return Verified(message_id=message_id, event=data["event"], body=data)


# -- event -> jobs (pure) ----------------------------------------------------------------------


def _id_at(body: Mapping[str, Any], *path: str, optional: bool = False) -> str | None:
    node: Any = body
    for key in path:
        node = node.get(key) if isinstance(node, Mapping) else None
    if node is None and optional:
        return None
    if not isinstance(node, str) or not node.strip() or len(node) > MAX_ID_CHARS:
        raise Rejected(400, Outcome.MALFORMED, f"event has no usable {'.'.join(path)}")
    recall_id = canonical_id(node)
    if recall_id is None:  # anything else would only become a job that fails for good
        raise Rejected(400, Outcome.MALFORMED, f"{'.'.join(path)} is not a Recall id (a UUID)")
    return recall_id


def poll_bot_job(bot_id: str) -> NewJob:
    return NewJob(kind=JobKind.POLL_BOT, key=bot_id, payload={}, bot_id=bot_id)


def resolve_recording_job(bot_id: str, recording_id: str) -> NewJob:
    """The same job poll_bot queues for each recording (so the two sources never differ)."""
    return NewJob(
        kind=JobKind.RESOLVE_RECORDING,
        key=recording_id,
        payload={"bot_id": bot_id, "recording_id": recording_id},
        bot_id=bot_id,
        parent=bot_id,
    )


def action_for(event: str, body: Mapping[str, Any]) -> Action | None:
    """The jobs one verified event asks for; None for events we ignore."""
    if event in BOT_POLL_EVENTS:
        bot_id = _id_at(body, "data", "bot", "id")
        assert bot_id is not None
        return Action((poll_bot_job(bot_id),), rearm_failed_poll=event == "bot.done")
    if event == LEGACY_BOT_EVENT:
        status = body.get("data", {}).get("status") if isinstance(body.get("data"), dict) else None
        code = status.get("code") if isinstance(status, Mapping) else None
        if code not in LEGACY_POLL_CODES:
            return None
        bot_id = _id_at(body, "data", "bot_id")
        assert bot_id is not None
        return Action((poll_bot_job(bot_id),), rearm_failed_poll=code == "done")
    if event in RECORDING_EVENTS:
        recording_id = _id_at(body, "data", "recording", "id")
        assert recording_id is not None
        bot_id = _id_at(body, "data", "bot", "id", optional=True) or NO_BOT
        return Action((resolve_recording_job(bot_id, recording_id),))
    return None


# -- intake: the one place a delivery touches the store ------------------------------------


async def accept(store: JobStore, verified: Verified) -> Outcome:
    """Queue what a verified delivery asks for, then remember its id.

    The order is the guarantee: the id is remembered only after the enqueue committed, so a
    store failure in between makes the sender retry and the retry does the work. A retry of
    a delivery that did commit finds its jobs already there (``IGNORE``), so it changes
    nothing. ``bot.done`` re-arms a *failed* poll_bot once per delivery id (the id is kept in
    the job's payload); store errors propagate to the caller, which answers 5xx.
    """
    action = action_for(verified.event, verified.body)
    if action is None:
        return Outcome.IGNORED
    jobs, mode = list(action.jobs), OnConflict.IGNORE
    if action.rearm_failed_poll:
        existing = await store.get(job_id(JobKind.POLL_BOT, jobs[0].key))
        if (
            existing is not None
            and existing.state is JobState.FAILED
            and existing.payload.get("rearmed_by") != verified.message_id
        ):
            jobs = [replace(jobs[0], payload={"rearmed_by": verified.message_id})]
            mode = OnConflict.REARM
    await store.enqueue(jobs, mode)
    if not await store.remember_delivery(verified.message_id):
        return Outcome.DUPLICATE
    return Outcome.ENQUEUED
