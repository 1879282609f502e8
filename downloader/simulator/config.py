"""Settings of a simulated workspace: bots to generate, limits, timings and faults (pure).

Everything here is a frozen value object so that one configuration can be shared between the
event loop thread and a test thread without copying.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, NamedTuple

Outcome = Literal["done", "fatal", "video_separate_failed", "no_video_separate"]
OUTCOMES: frozenset[str] = frozenset(
    {"done", "fatal", "video_separate_failed", "no_video_separate"}
)

DEFAULT_PART_SIZE = 256 * 1024
DEFAULT_URL_TTL_SECONDS = 6 * 3600.0  # Recall's S3 links live about 6 h (recall-api.md §5)
DEFAULT_STALL_SECONDS = 30.0
DEFAULT_FAULT_RETRY_AFTER = 1
DEFAULT_FATAL_SUB_CODE = "bot_errored"
DEFAULT_FAILED_SUB_CODE = "video_separate_processing_failed"
MIN_PART_SIZE = 256  # room for ftyp + mdat header + unique prefix + moov
# recording_config.retention (recall-api.md §8): hours of a "timed" retention, "forever", or
# None (not set: the workspace default; for the simulator's workspace that keeps media forever,
# like accounts created after 2025-06-12, so the API shows ``retention: null``).
Retention = float | Literal["forever"] | None
FOREVER = "forever"


class Lifecycle(NamedTuple):
    """Seconds a bot spends in each phase, before ``time_scale`` is applied.

    A NamedTuple so callers may pass a plain tuple of four or five numbers.
    """

    joining_call: float = 1.0
    in_call_recording: float = 4.0
    call_ended: float = 1.0
    recording_processing: float = 1.0
    video_separate_processing: float = 1.0

    @property
    def total(self) -> float:
        return (
            self.joining_call
            + self.in_call_recording
            + self.call_ended
            + max(self.recording_processing, self.video_separate_processing)
        )


DEFAULT_LIFECYCLE = Lifecycle()


def as_lifecycle(value: Sequence[float] | None) -> Lifecycle | None:
    """Accept a Lifecycle, a 4-tuple (one processing time for both) or a 5-tuple."""
    if value is None or isinstance(value, Lifecycle):
        return value
    items = [float(v) for v in value]
    if len(items) == 4:
        items.append(items[3])
    if len(items) != 5 or any(v < 0 for v in items):
        raise ValueError(f"lifecycle needs 4 or 5 non-negative numbers, got {value!r}")
    return Lifecycle(*items)


@dataclass(frozen=True)
class ParticipantSpec:
    """One participant entry in a meeting; names are passed through verbatim, never cleaned."""

    id: int
    name: str | None = "Participant"
    is_host: bool | None = False
    platform: str | None = "desktop"
    email: str | None = None
    parts: int = 1
    screenshare_parts: int = 0
    extra_data: Mapping[str, Any] | None = None


@dataclass(frozen=True)
class BotSpec:
    """A hand-built bot for scenario tests (see ``Simulator.add_bot``)."""

    participants: Sequence[ParticipantSpec] = ()
    outcome: Outcome = "done"
    sub_code: str | None = None
    lifecycle: Lifecycle | Sequence[float] | None = None
    metadata: Mapping[str, Any] = field(default_factory=dict)
    recordings: int = 1
    part_size: int | None = None
    bot_name: str = "Recall Simulator Bot"
    platform: str = "zoom"
    # Hours of a timed retention (``expires_at`` = the recording's done time + hours),
    # "forever", or None for the workspace's ``SimulatorConfig.retention_hours``.
    retention: Retention = None

    def __post_init__(self) -> None:
        check_retention(self.retention, "retention")
        if self.outcome not in OUTCOMES:
            raise ValueError(
                f"unknown outcome {self.outcome!r}; expected one of {sorted(OUTCOMES)}"
            )
        if not 1 <= self.recordings <= 255:
            raise ValueError("recordings must be between 1 and 255")
        if self.part_size is not None and self.part_size < MIN_PART_SIZE:
            raise ValueError(f"part_size must be at least {MIN_PART_SIZE}")
        object.__setattr__(self, "participants", tuple(self.participants))
        object.__setattr__(self, "lifecycle", as_lifecycle(self.lifecycle))


MAX_RETENTION_HOURS = 100 * 366 * 24  # expiry instants stay well inside datetime's range


def check_retention(value: object, name: str, *, forever: bool = True) -> None:
    if value is None or (forever and value == FOREVER):
        return
    number = isinstance(value, int | float) and not isinstance(value, bool)
    if not number or not 0 < value <= MAX_RETENTION_HOURS:  # type: ignore[operator]
        allowed = " or 'forever'" if forever else " (None keeps media forever)"
        raise ValueError(
            f"{name} must be a number of hours in (0, {MAX_RETENTION_HOURS}]{allowed}, "
            f"got {value!r}"
        )


FAULT_KNOBS: tuple[str, ...] = (
    "api_5xx",
    "api_429",
    "manifest_5xx",
    "media_5xx",
    "truncate",
    "stall",
    "ignore_range",
    "expire",
    "etag_change",
    "redirect",
)

# Short names accepted by ``parse_faults`` (the CLI spelling) on top of the field names.
FAULT_ALIASES: Mapping[str, str] = {
    "5xx": "api_5xx",
    "429": "api_429",
    "api5xx": "api_5xx",
    "manifest5xx": "manifest_5xx",
    "media5xx": "media_5xx",
    "etag": "etag_change",
}

FaultValue = float | int


@dataclass(frozen=True)
class FaultConfig:
    """How often each fault fires.

    A float (or any value below 1) is a probability per eligible request; an ``int`` >= 1 is
    an exact number of injections, after which the fault stops.
    """

    api_5xx: FaultValue = 0.0
    api_429: FaultValue = 0.0
    manifest_5xx: FaultValue = 0.0
    media_5xx: FaultValue = 0.0
    truncate: FaultValue = 0.0
    stall: FaultValue = 0.0
    ignore_range: FaultValue = 0.0
    expire: FaultValue = 0.0
    etag_change: FaultValue = 0.0
    redirect: FaultValue = 0.0
    stall_seconds: float = DEFAULT_STALL_SECONDS
    retry_after_seconds: int = DEFAULT_FAULT_RETRY_AFTER  # announced by the api_429 fault

    def __post_init__(self) -> None:
        for knob in FAULT_KNOBS:
            value = getattr(self, knob)
            if isinstance(value, bool) or value < 0:
                raise ValueError(f"fault {knob} must be a non-negative number, got {value!r}")
            if isinstance(value, float) and value > 1:
                raise ValueError(f"fault {knob} probability {value} is above 1")


def parse_faults(spec: str) -> FaultConfig:
    """Parse ``"5xx=0.1,429=3,truncate=0.2,stall=1,stall_seconds=5"`` into a FaultConfig."""
    values: dict[str, Any] = {}
    for item in filter(None, (p.strip() for p in spec.split(","))):
        name, sep, raw = item.partition("=")
        if not sep:
            raise ValueError(f"fault {item!r} needs a value (name=value)")
        key = FAULT_ALIASES.get(name.strip().lower(), name.strip().lower())
        raw = raw.strip()
        if key == "stall_seconds":
            values[key] = float(raw)
        elif key in {"retry_after_seconds", "retry_after"}:
            values["retry_after_seconds"] = int(raw)
        elif key in FAULT_KNOBS:
            values[key] = _fault_value(raw)
        else:
            raise ValueError(f"unknown fault {name!r}; known: {', '.join(FAULT_KNOBS)}")
    return FaultConfig(**values)


def _fault_value(raw: str) -> FaultValue:
    number = float(raw)
    if "." in raw or "e" in raw.lower() or number < 1:
        return number
    return int(raw)


def _check_webhook_secret(secret: str) -> None:
    """A Standard Webhooks secret is ``whsec_`` followed by base64 key bytes."""
    try:
        key = base64.b64decode(secret.removeprefix("whsec_"), validate=True)
    except binascii.Error:
        key = b""
    if not secret.startswith("whsec_") or not key:
        raise ValueError("webhook_secret must look like whsec_<base64>")


_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(i?b?)\s*$", re.IGNORECASE)
_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}


def parse_size(text: str) -> int:
    """``"256K"`` → 262144; suffixes are binary (K = 1024), ``B``/``iB`` optional."""
    match = _SIZE.match(text)
    if match is None:
        raise ValueError(f"not a size: {text!r}")
    return int(float(match.group(1)) * _UNITS[match.group(2).lower()])


@dataclass(frozen=True)
class SimulatorConfig:
    """The whole simulated workspace. Defaults describe a small, fault-free workspace."""

    bots: int = 3
    participants_per_bot: int = 2
    parts_per_participant: int = 2
    part_size: int = DEFAULT_PART_SIZE
    seed: int = 1
    api_key: str = "sim-key"
    list_limit_per_min: int | None = 60
    retrieve_limit_per_min: int | None = 300
    rate_window_seconds: float = 60.0
    # A request arriving this soon after a 429 was plausibly sent before the client could read
    # the 429; it is not counted as an early retry (capped at half the Retry-After).
    in_flight_grace_seconds: float = 0.5
    url_ttl_seconds: float = DEFAULT_URL_TTL_SECONDS
    page_size: int = 10
    time_scale: float = 1.0
    bot_lifecycle: Lifecycle | Sequence[float] = DEFAULT_LIFECYCLE
    faults: FaultConfig = FaultConfig()
    throttle_bytes_per_sec: int | None = None
    webhook_url: str | None = None
    webhook_secret: str | None = None
    created_at_spread_days: float = 0.0
    recordings_per_bot: int = 1
    arrival_interval_seconds: float | None = None
    # The workspace's retention for bots that set none: hours after a recording is done until
    # it expires (``expires_at``); None keeps media forever (``expires_at: null``).
    retention_hours: float | None = None
    # Bots added at start next to the ordinary ones, each ending badly in its own way.
    fatal_bots: int = 0  # the bot never records: fatal with sub_code bot_errored
    failed_video_separate_bots: int = 0  # recorded, but the video_separate ends "failed"
    no_video_separate_bots: int = 0  # recorded without recording_config.video_separate_mp4
    host: str = "127.0.0.1"
    api_port: int = 0
    manifest_port: int = 0
    media_port: int = 0
    request_log_limit: int = 10_000

    def __post_init__(self) -> None:
        lifecycle = as_lifecycle(self.bot_lifecycle)
        assert lifecycle is not None
        object.__setattr__(self, "bot_lifecycle", lifecycle)
        checks = [
            (self.bots >= 0, "bots must be >= 0"),
            (self.participants_per_bot >= 1, "participants_per_bot must be >= 1"),
            (self.parts_per_participant >= 1, "parts_per_participant must be >= 1"),
            (self.part_size >= MIN_PART_SIZE, f"part_size must be >= {MIN_PART_SIZE}"),
            (self.rate_window_seconds > 0, "rate_window_seconds must be > 0"),
            (self.in_flight_grace_seconds >= 0, "in_flight_grace_seconds must be >= 0"),
            (self.url_ttl_seconds > 0, "url_ttl_seconds must be > 0"),
            (self.page_size >= 1, "page_size must be >= 1"),
            (self.time_scale >= 0, "time_scale must be >= 0"),
            (1 <= self.recordings_per_bot <= 255, "recordings_per_bot must be in 1..255"),
            (self.created_at_spread_days >= 0, "created_at_spread_days must be >= 0"),
            (
                min(self.special_bots) >= 0,
                "fatal_bots, failed_video_separate_bots and no_video_separate_bots must be >= 0",
            ),
            (self.bots + sum(self.special_bots) < 1 << 32, "too many bots"),
        ]
        for ok, message in checks:
            if not ok:
                raise ValueError(message)
        if self.webhook_secret is not None:
            _check_webhook_secret(self.webhook_secret)
        check_retention(self.retention_hours, "retention_hours", forever=False)

    @property
    def special_bots(self) -> tuple[int, int, int]:
        """(fatal, video_separate failed, without video_separate) bots added at start."""
        return self.fatal_bots, self.failed_video_separate_bots, self.no_video_separate_bots

    @property
    def lifecycle(self) -> Lifecycle:
        assert isinstance(self.bot_lifecycle, Lifecycle)
        return self.bot_lifecycle

    def replace(self, **changes: Any) -> SimulatorConfig:
        return dataclasses.replace(self, **changes)
