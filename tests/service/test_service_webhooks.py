"""Signed, forged, stale and duplicate webhooks against a running `recall-dl run`."""

from __future__ import annotations

import base64
import json
import time

from downloader.simulator import SimulatorThread
from tests.service.harness import (
    SECRET,
    ServiceRun,
    assert_bot_complete,
    bot_event,
    recording_event,
    sign,
)

OTHER_SECRET = "whsec_" + base64.b64encode(b"not the workspace secret").decode()
GARBAGE_SIGNATURE = "v1," + base64.b64encode(b"x" * 32).decode()


def post(service: ServiceRun, body: bytes, headers: dict[str, str]) -> tuple[int, dict[str, str]]:
    status, raw = service.http("POST", "/webhooks/recall", body, headers)
    return status, (json.loads(raw) if raw else {})


def test_webhooks_enqueue_once_and_refuse_forgeries(
    service: ServiceRun, sim: SimulatorThread
) -> None:
    service.start(RECALL_DL_WEBHOOKS_ENABLED="true", RECALL_WEBHOOK_SECRET=SECRET)
    service.wait_ready()
    bot_a, bot_b = sim.bot_ids
    recording_b = sim.recording_ids(bot_b)[0]

    def refused(body: bytes, headers: dict[str, str], status: int) -> None:
        before = service.jobs()
        assert post(service, body, headers)[0] == status
        assert service.jobs() == before  # nothing enqueued, nothing changed

    done_a = bot_event("bot.done", bot_a)
    refused(*sign(done_a, msg_id="msg_forged", secret=OTHER_SECRET), 401)
    refused(*sign(done_a, msg_id="msg_stale", timestamp=time.time() - 600), 400)
    refused(*sign(done_a, msg_id="msg_future", timestamp=time.time() + 600), 400)
    refused(json.dumps(done_a).encode(), {"Content-Type": "application/json"}, 401)
    refused(*sign(b"{not json", msg_id="msg_bad_json"), 400)
    body, headers = sign(done_a, msg_id="msg_tampered")
    refused(body.replace(b"bot.done", b"bot.fail"), headers, 401)

    body, headers = sign(done_a, msg_id="msg_a_done")
    assert post(service, body, headers) == (200, {"outcome": "enqueued"})
    jobs_after_first = service.jobs()
    assert (
        jobs_after_first.get(("poll_bot", "pending"), 0)
        + jobs_after_first.get(("poll_bot", "running"), 0)
        + jobs_after_first.get(("poll_bot", "done"), 0)
        == 1
    )
    # Svix re-delivers the same id (a retry): acknowledged, nothing new.
    body, headers = sign(done_a, msg_id="msg_a_done")
    assert post(service, body, headers) == (200, {"outcome": "duplicate"})

    # The legacy Svix header family, with several signatures (key rotation): one matches.
    svix = sign(
        recording_event("recording.done", recording_b, bot_b),
        msg_id="msg_b_rec",
        family="svix",
        extra_signatures=(GARBAGE_SIGNATURE,),
    )
    assert post(service, *svix) == (200, {"outcome": "enqueued"})
    # Events we do not act on are acknowledged and ignored.
    assert post(service, *sign(bot_event("bot.joining_call", bot_b), msg_id="msg_join"))[0] == 204

    recordings = len(sim.recording_ids(bot_a)) + 1
    service.wait_until(
        lambda: service.jobs().get(("finalize_recording", "done"), 0) == recordings,
        "the announced recordings finalized",
    )
    assert_bot_complete(service, bot_a)
    assert (service.out / bot_b / recording_b / "manifest.json").is_file()
    assert service.jobs().get(("poll_bot", "done"), 0) == 1  # bot B was never polled

    metrics = service.metrics()
    outcomes = {
        "enqueued": 2,
        "duplicate": 1,
        "ignored": 1,
        "unauthorized": 3,
        "stale": 2,
        "malformed": 1,
    }
    for outcome, n in outcomes.items():
        assert metrics[f'recall_dl_webhook_deliveries_total{{outcome="{outcome}"}}'] == n, outcome
    assert service.stop() == 0
