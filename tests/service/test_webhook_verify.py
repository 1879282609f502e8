"""Verification and event mapping of Recall webhooks (pure: no service, no store)."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from downloader.config import Secret
from downloader.errors import ConfigError
from downloader.lifecycle import JobKind
from downloader.service.webhooks import NO_BOT, Outcome, Rejected, Verifier, action_for
from tests.service.harness import SECRET, bot_event, recording_event, sign

BOT = "8a5f6e0c-1b2d-4c3e-9f00-123456789abc"
REC = "11111111-2222-4333-8444-555555555555"


@pytest.fixture
def verifier() -> Verifier:
    return Verifier(Secret(SECRET))


def rejected(verifier: Verifier, body: bytes, headers: dict[str, str]) -> Rejected:
    with pytest.raises(Rejected) as caught:
        verifier.verify(body, headers)
    return caught.value


@pytest.mark.parametrize("family", ["webhook", "svix"])
def test_both_header_families_verify(verifier: Verifier, family: str) -> None:
    body, headers = sign(bot_event("bot.done", BOT), msg_id="msg_1", family=family)
    verified = verifier.verify(body, headers)
    assert (verified.message_id, verified.event) == ("msg_1", "bot.done")


def test_header_names_are_case_insensitive(verifier: Verifier) -> None:
    body, headers = sign(bot_event("bot.done", BOT), msg_id="msg_1")
    assert verifier.verify(body, {k.upper(): v for k, v in headers.items()}).event == "bot.done"


def test_any_of_several_signatures_may_match(verifier: Verifier) -> None:
    other = "whsec_" + "QUJDREVGR0hJSktMTU5PUA=="
    _, old = sign(b"{}", msg_id="msg_1", secret=other)
    body, headers = sign(
        bot_event("bot.done", BOT), msg_id="msg_1", extra_signatures=("v2,abc", "v1,!!!")
    )
    headers["webhook-signature"] = old["webhook-signature"] + " " + headers["webhook-signature"]
    assert verifier.verify(body, headers).message_id == "msg_1"


@pytest.mark.parametrize(
    ("change", "status", "outcome"),
    [
        ({"webhook-signature": "v1,AAAA"}, 401, Outcome.UNAUTHORIZED),
        ({"webhook-signature": "nonsense"}, 401, Outcome.UNAUTHORIZED),
        ({"webhook-id": "msg_other"}, 401, Outcome.UNAUTHORIZED),
        ({"webhook-timestamp": "now-301"}, 400, Outcome.STALE),
        ({"webhook-timestamp": "now+400"}, 400, Outcome.STALE),
        ({"webhook-timestamp": "yesterday"}, 400, Outcome.MALFORMED),
        ({"webhook-signature": ""}, 401, Outcome.UNAUTHORIZED),
    ],
)
def test_forged_stale_and_malformed_headers(
    verifier: Verifier, change: dict[str, str], status: int, outcome: Outcome
) -> None:
    body, headers = sign(bot_event("bot.done", BOT), msg_id="msg_1")
    # Relative timestamps are resolved here, not at collection: a long run would
    # otherwise bring a "future" timestamp back inside the tolerance.
    change = {k: _resolve_now(v) for k, v in change.items()}
    error = rejected(verifier, body, {**headers, **change})
    assert (error.status, error.outcome) == (status, outcome)


def _resolve_now(value: str) -> str:
    if value.startswith("now"):
        return str(int(time.time()) + int(value.removeprefix("now")))
    return value


def test_unsigned_and_wrongly_signed_bodies(verifier: Verifier) -> None:
    body, headers = sign(bot_event("bot.done", BOT), msg_id="msg_1")
    assert rejected(verifier, body, {}).status == 401
    assert rejected(verifier, body + b" ", headers).status == 401
    other = "whsec_" + "QUJDREVGR0hJSktMTU5PUA=="
    assert (
        rejected(verifier, *sign(bot_event("bot.done", BOT), msg_id="m", secret=other)).status
        == 401
    )


@pytest.mark.parametrize("raw", [b"{not json", b"[]", b'{"data": {}}', "é".encode("latin-1")])
def test_signed_but_malformed_bodies(verifier: Verifier, raw: bytes) -> None:
    if raw == "é".encode("latin-1"):
        headers = sign(b"x", msg_id="m")[1]  # not UTF-8: cannot even be checked
    else:
        raw, headers = sign(raw, msg_id="m")
    error = rejected(verifier, raw, headers)
    assert (error.status, error.outcome) == (400, Outcome.MALFORMED)


def test_a_secret_that_is_not_base64_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="whsec_"):
        Verifier(Secret("whsec_"))


def kinds(event: str, body: dict[str, Any]) -> list[tuple[JobKind, str, dict[str, Any]]]:
    action = action_for(event, body)
    assert action is not None
    return [(j.kind, j.key, dict(j.payload)) for j in action.jobs]


def test_bot_events_poll_the_bot() -> None:
    assert kinds("bot.done", bot_event("bot.done", BOT)) == [(JobKind.POLL_BOT, BOT, {})]
    assert kinds("bot.fatal", bot_event("bot.fatal", BOT)) == [(JobKind.POLL_BOT, BOT, {})]
    done = action_for("bot.done", bot_event("bot.done", BOT))
    fatal = action_for("bot.fatal", bot_event("bot.fatal", BOT))
    assert done is not None and done.rearm_failed_poll
    assert fatal is not None and not fatal.rearm_failed_poll


@pytest.mark.parametrize(
    ("code", "polls"), [("done", True), ("fatal", True), ("in_call_recording", False)]
)
def test_legacy_status_change(code: str, polls: bool) -> None:
    body = {"event": "bot.status_change", "data": {"bot_id": BOT, "status": {"code": code}}}
    action = action_for("bot.status_change", body)
    assert (action is not None) == polls
    if action is not None:
        assert [(j.kind, j.key) for j in action.jobs] == [(JobKind.POLL_BOT, BOT)]


@pytest.mark.parametrize(
    "event", ["recording.done", "video_separate.done", "video_separate.failed"]
)
def test_recording_events_resolve_the_recording(event: str) -> None:
    expected = {"bot_id": BOT, "recording_id": REC}
    assert kinds(event, recording_event(event, REC, BOT)) == [
        (JobKind.RESOLVE_RECORDING, REC, expected)
    ]


def test_a_recording_without_a_bot_is_filed_under_no_bot() -> None:
    [(kind, key, payload)] = kinds("recording.done", recording_event("recording.done", REC, None))
    assert (kind, key, payload["bot_id"]) == (JobKind.RESOLVE_RECORDING, REC, NO_BOT)


@pytest.mark.parametrize(
    "event",
    ["bot.joining_call", "recording.processing", "transcript.done", "bot.in_call_recording"],
)
def test_other_events_are_ignored(event: str) -> None:
    assert action_for(event, bot_event(event, BOT)) is None


@pytest.mark.parametrize(
    "body",
    [
        {"event": "bot.done", "data": {}},
        {"event": "bot.done", "data": {"bot": {"id": 5}}},
        {"event": "recording.done", "data": {"recording": None}},
        {"event": "bot.done", "data": {"bot": {"id": "x" * 500}}},
        {"event": "bot.done", "data": {"bot": {"id": "../../etc"}}},  # not a UUID
        {"event": "recording.done", "data": {"recording": {"id": "r1"}, "bot": {"id": "b"}}},
    ],
)
def test_known_events_without_usable_ids_are_malformed(body: dict[str, Any]) -> None:
    with pytest.raises(Rejected) as caught:
        action_for(str(body["event"]), json.loads(json.dumps(body)))
    assert caught.value.status == 400
