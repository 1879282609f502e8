"""poll_bot: wait for a bot to finish its call, then hand each recording on."""

from __future__ import annotations

import structlog

from downloader import lifecycle
from downloader.errors import JobFailed
from downloader.lifecycle import JobKind
from downloader.models import Bot
from downloader.pipeline.context import PipelineContext
from downloader.pipeline.outcome import Finish, Outcome, Wait
from downloader.store.protocol import Lease, NewJob, OnConflict

log = structlog.get_logger(__name__)

# Codes after which the bot will never record again. "analysis_*" are legacy codes that
# follow "done"; the recordings are as final as after "done".
FINISHED_CODES = frozenset({"done", "analysis_done", "analysis_failed"})
FAILED_CODES = frozenset({"fatal", "media_expired"})
# Codes we know mean "still in progress"; anything else is logged once, then treated the same.
KNOWN_WAITING_CODES = frozenset(
    {
        "ready",
        "joining_call",
        "in_waiting_room",
        "participant_in_waiting_room",
        "in_call_not_recording",
        "recording_permission_allowed",
        "recording_permission_denied",
        "in_call_recording",
        "recording_done",
        "call_ended",
    }
)


def recording_jobs(bot: Bot) -> list[NewJob]:
    return [
        NewJob(
            kind=JobKind.RESOLVE_RECORDING,
            key=recording.id,
            payload={"bot_id": bot.id, "recording_id": recording.id},
            bot_id=bot.id,
            parent=bot.id,
        )
        for recording in bot.recordings
    ]


async def poll_bot(ctx: PipelineContext, lease: Lease) -> Outcome:
    bot_id = lease.job.key
    payload = dict(lease.job.payload)
    bot = await ctx.client.get_bot(bot_id)
    status = bot.status
    code = status.code if status else "unknown"
    if code in FINISHED_CODES:
        if not bot.recordings:
            raise JobFailed(f"bot {bot_id} finished ({code}) without any recording")
        await ctx.store.enqueue(recording_jobs(bot), OnConflict.IGNORE)
        ctx.wake_workers()
        log.info("bot_done", bot_id=bot_id, recordings=len(bot.recordings))
        return Finish({"recordings": [r.id for r in bot.recordings], "code": code})
    if code in FAILED_CODES:
        sub = f" ({status.sub_code})" if status and status.sub_code else ""
        raise JobFailed(f"bot {bot_id} ended with {code}{sub}")
    polls = int(payload.get("polls", 0))
    if code not in KNOWN_WAITING_CODES and code not in payload.get("unknown_codes", []):
        log.warning("bot_status_unknown", bot_id=bot_id, code=code)
        payload["unknown_codes"] = [*payload.get("unknown_codes", []), code]
    payload["polls"] = polls + 1
    payload["last_code"] = code
    delay = lifecycle.poll_delay(
        polls,
        initial=ctx.settings.poll_initial_seconds,
        maximum=ctx.settings.poll_max_seconds,
    )
    return Wait(delay, payload, reason=f"bot is {code}")
