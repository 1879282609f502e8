"""A bot's life as offsets from the moment it was asked to join (pure).

Bots never change state by being *told* to: their state is a function of elapsed time, so
thousands of bots cost nothing until someone looks at one, and ordinary bots (which share a
single plan, shifted by their start time) can be filtered by status with a binary search.

::

    joining_call ──▶ in_call_recording ──▶ call_ended ──▶ done
         │                 (recordings j = 0..k-1 split this phase)
         └──▶ fatal (outcome "fatal": no recordings)

With a timed retention the recordings' media is deleted when it ends (recall-api.md §8):
the recordings and their video_separates turn ``deleted`` and the bot ``media_expired``.
"""

from __future__ import annotations

from dataclasses import dataclass

from .clock import US
from .config import DEFAULT_FAILED_SUB_CODE, DEFAULT_FATAL_SUB_CODE, Lifecycle, Outcome

BOT_STATUS_ORDER = ("joining_call", "in_call_recording", "call_ended", "done")
CALL_ENDED_SUB_CODE = "call_ended_by_host"


@dataclass(frozen=True)
class StatusChange:
    code: str
    sub_code: str | None
    at: int  # microseconds after the bot's start


@dataclass(frozen=True)
class RecordingPlan:
    started: int
    completed: int
    done: int
    vs_created: int | None  # None: video_separate was never requested
    vs_finished: int | None
    vs_failed: bool
    expires: int | None = None  # media deleted (retention over); None: kept forever


@dataclass(frozen=True)
class Plan:
    status_changes: tuple[StatusChange, ...]
    recordings: tuple[RecordingPlan, ...]
    vs_failed_sub_code: str = DEFAULT_FAILED_SUB_CODE

    def status_at(self, elapsed: int) -> StatusChange | None:
        """The current status ``elapsed`` µs after start (None before the first change)."""
        current = None
        for change in self.status_changes:
            if change.at > elapsed:
                break
            current = change
        return current

    @property
    def in_call_at(self) -> int | None:
        return next((c.at for c in self.status_changes if c.code == "in_call_recording"), None)


def effective_durations(lifecycle: Lifecycle, time_scale: float) -> Lifecycle:
    """Durations actually spent. ``time_scale == 0`` keeps nominal durations: the bot's whole
    life is then placed in the past (see ``start_shift``) so it is already done."""
    if time_scale == 0:
        return lifecycle
    return Lifecycle(*(value * time_scale for value in lifecycle))


def start_shift(lifecycle: Lifecycle, time_scale: float) -> int:
    """How far before its registration a bot's life begins (µs)."""
    return int(lifecycle.total * US) if time_scale == 0 else 0


def build_plan(
    lifecycle: Lifecycle,
    time_scale: float,
    outcome: Outcome,
    sub_code: str | None,
    recordings: int,
    *,
    retention_us: int | None = None,
) -> Plan:
    """``retention_us``: how long media is kept after a recording is done (None: forever)."""
    d = [int(v * US) for v in effective_durations(lifecycle, time_scale)]
    join, record, ended, rec_processing, vs_processing = d
    if outcome == "fatal":
        fatal = (
            StatusChange("joining_call", None, 0),
            StatusChange("fatal", sub_code or DEFAULT_FATAL_SUB_CODE, join),
        )
        return Plan(fatal, ())
    call_end = join + record
    ended_sub_code = (sub_code if outcome == "done" else None) or CALL_ENDED_SUB_CODE
    failed_sub_code = (
        sub_code if outcome == "video_separate_failed" else None
    ) or DEFAULT_FAILED_SUB_CODE
    done = call_end + ended
    expires = None if retention_us is None else done + rec_processing + retention_us
    changes: tuple[StatusChange, ...] = (
        StatusChange("joining_call", None, 0),
        StatusChange("in_call_recording", None, join),
        StatusChange("call_ended", ended_sub_code, call_end),
        StatusChange("done", None, done),
    )
    if expires is not None and recordings > 0:
        changes += (StatusChange("media_expired", None, expires),)
    plans = []
    for j in range(recordings):
        # Segment boundaries are strictly increasing so recordings of one bot never tie.
        started = join + (record * j) // recordings + j
        completed = join + (record * (j + 1)) // recordings + j + 1
        has_vs = outcome != "no_video_separate"
        plans.append(
            RecordingPlan(
                started=started,
                completed=completed,
                done=done + rec_processing,
                vs_created=completed if has_vs else None,
                vs_finished=done + vs_processing if has_vs else None,
                vs_failed=outcome == "video_separate_failed",
                expires=expires,
            )
        )
    return Plan(changes, tuple(plans), failed_sub_code)
