"""The simulated workspace: bots, recordings, video_separates and parts, materialised lazily.

Bot ``i < config.bots`` is an *ordinary* bot: its participants, ids and timings are derived
from ``(seed, i)`` whenever needed, and all ordinary bots share one lifecycle plan shifted by
their start time (oldest first, so start time increases with the index). Bots added at run
time (scenario builder, arrivals) are kept explicitly; there are few of them.
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property, lru_cache

from . import mp4
from .clock import US, SimClock
from .config import (
    FOREVER,
    BotSpec,
    Lifecycle,
    Outcome,
    ParticipantSpec,
    Retention,
    SimulatorConfig,
)
from .ids import MAX_PARTS_PER_RECORDING, IdCodec, Kind, Ref
from .timeline import Plan, RecordingPlan, StatusChange, build_plan, start_shift

# In the order of SimulatorConfig.special_bots.
SPECIAL_OUTCOMES: tuple[Outcome, ...] = ("fatal", "video_separate_failed", "no_video_separate")
MIN_GENERATED_STEP_US = 1000  # ordinary bots start at least 1 ms apart: a total order by time
_PLATFORMS = ("zoom", "google_meet", "microsoft_teams")
_NAMES = (
    "Ada Lovelace", "Grace Hopper", "Alan Turing", "Katherine Johnson", "Linus Torvalds",
    "Margaret Hamilton", "José Álvarez", "Zoë Müller", "李雷", "Søren Kierkegaard",
    "Ngozi Okonjo", "Priya Raman", "Омар Хайям", "Fatima Zahra", "Chloé Dubois",
)  # fmt: skip


@dataclass(frozen=True)
class BotEntry:
    index: int
    id: str
    spec: BotSpec
    start_us: int  # the joining_call instant; the plan's offsets count from here
    registered_us: int  # when the bot became visible through the API
    plan: Plan
    ordinary: bool

    def status(self, now_us: int) -> StatusChange | None:
        return self.plan.status_at(now_us - self.start_us)

    def changes(self, now_us: int) -> list[StatusChange]:
        return [c for c in self.plan.status_changes if self.start_us + c.at <= now_us]


@dataclass(frozen=True)
class RecordingEntry:
    bot: BotEntry
    index: int
    id: str
    video_separate_id: str
    plan: RecordingPlan

    @property
    def created_us(self) -> int:
        return self.bot.start_us + self.plan.started

    @property
    def completed_us(self) -> int:
        return self.bot.start_us + self.plan.completed

    @property
    def done_us(self) -> int:
        return self.bot.start_us + self.plan.done

    @property
    def vs_created_us(self) -> int | None:
        vs = self.plan.vs_created
        return None if vs is None else self.bot.start_us + vs

    @property
    def vs_finished_us(self) -> int | None:
        vs = self.plan.vs_finished
        return None if vs is None else self.bot.start_us + vs

    def exists(self, now_us: int) -> bool:
        return self.created_us <= now_us

    def vs_exists(self, now_us: int) -> bool:
        created = self.vs_created_us
        return created is not None and created <= now_us

    @property
    def expires_us(self) -> int | None:
        """When the media is deleted (a timed retention ends); None: kept forever."""
        expires = self.plan.expires
        return None if expires is None else self.bot.start_us + expires

    def status(self, now_us: int) -> tuple[str, int]:
        """(code, updated_at µs) of the recording."""
        expires = self.expires_us
        if expires is not None and now_us >= expires:
            return "deleted", expires
        if now_us >= self.done_us:
            return "done", self.done_us
        return "processing", self.created_us

    def vs_status(self, now_us: int) -> tuple[str, str | None, int]:
        """(code, sub_code, updated_at µs) of the video_separate (call only if it exists)."""
        finished, created = self.vs_finished_us, self.vs_created_us
        assert finished is not None
        assert created is not None
        if now_us < finished:
            return "processing", None, created
        if self.plan.vs_failed:
            return "failed", self.bot.plan.vs_failed_sub_code, finished
        expires = self.expires_us
        if expires is not None and now_us >= max(expires, finished):
            return "deleted", None, max(expires, finished)
        return "done", None, finished


@dataclass(frozen=True)
class PartEntry:
    recording: RecordingEntry
    index: int
    id: str
    participant: ParticipantSpec
    type: str  # "webcam" | "screenshare"
    start_us: int
    duration: float
    size: int


class World:
    def __init__(self, config: SimulatorConfig, clock: SimClock) -> None:
        self.config = config
        self.clock = clock
        self.codec = IdCodec(config.seed)
        self.block = mp4.random_block(config.seed)
        self.ordinary_count = config.bots
        self.ordinary_plan = self._plan(BotSpec(recordings=config.recordings_per_bot))
        spread_us = int(config.created_at_spread_days * 86_400 * US)
        self.ordinary_step_us = max(MIN_GENERATED_STEP_US, spread_us // max(1, config.bots))
        self._ordinary_end_us = clock.start_us - start_shift(config.lifecycle, config.time_scale)
        self.added: list[BotEntry] = []
        self._versions: dict[str, tuple[int, int]] = {}  # part id -> (version, changed at µs)
        self.ordinary_bot: Callable[[int], BotEntry] = lru_cache(maxsize=8192)(self._ordinary)
        self._parts: Callable[[int, int], tuple[PartEntry, ...]] = lru_cache(maxsize=4096)(
            self._build_parts
        )
        self._objects: Callable[[str, int, int], mp4.Mp4Object] = lru_cache(maxsize=4096)(
            self._build_object
        )
        self._add_special_bots()

    def _add_special_bots(self) -> None:
        """The configured bad endings, after the ordinary bots (listed with them in bot_ids)."""
        for outcome, count in zip(SPECIAL_OUTCOMES, self.config.special_bots, strict=True):
            for _ in range(count):
                spec = dataclasses.replace(self.ordinary_spec(self.bot_count), outcome=outcome)
                self.add_bot(spec, ordinary=True)

    # ---- bots -------------------------------------------------------------------------------

    @property
    def bot_count(self) -> int:
        return self.ordinary_count + len(self.added)

    def ordinary_start_us(self, index: int) -> int:
        return self._ordinary_end_us - (self.ordinary_count - index) * self.ordinary_step_us

    def bot(self, index: int) -> BotEntry | None:
        if 0 <= index < self.ordinary_count:
            return self.ordinary_bot(index)
        offset = index - self.ordinary_count
        return self.added[offset] if 0 <= offset < len(self.added) else None

    def bot_by_id(self, bot_id: str) -> BotEntry | None:
        ref = self.codec.decode(Kind.BOT, bot_id)
        return None if ref is None or ref.recording or ref.part else self.bot(ref.bot)

    def add_bot(self, spec: BotSpec, *, ordinary: bool = False) -> BotEntry:
        index = self.bot_count
        now = self.clock.now_us()
        lifecycle = spec.lifecycle if isinstance(spec.lifecycle, Lifecycle) else None
        shift = start_shift(lifecycle or self.config.lifecycle, self.config.time_scale)
        entry = BotEntry(
            index=index,
            id=self.codec.encode(Kind.BOT, Ref(index)),
            spec=spec,
            start_us=now - shift,
            registered_us=now,
            plan=self._plan(spec),
            ordinary=ordinary,
        )
        self.added.append(entry)
        return entry

    def ordinary_spec(self, index: int) -> BotSpec:
        rng = random.Random(f"recall-sim-bot:{self.config.seed}:{index}")
        participants = [
            ParticipantSpec(
                id=100 + k,
                name=rng.choice(_NAMES),
                is_host=k == 0,
                platform="desktop",
                email=None,
                parts=self.config.parts_per_participant,
                screenshare_parts=1 if k == 0 else 0,
            )
            for k in range(self.config.participants_per_bot)
        ]
        return BotSpec(
            participants=participants,
            recordings=self.config.recordings_per_bot,
            platform=_PLATFORMS[index % len(_PLATFORMS)],
        )

    def _ordinary(self, index: int) -> BotEntry:
        start = self.ordinary_start_us(index)
        return BotEntry(
            index=index,
            id=self.codec.encode(Kind.BOT, Ref(index)),
            spec=self.ordinary_spec(index),
            start_us=start,
            registered_us=min(start, self.clock.start_us),
            plan=self.ordinary_plan,
            ordinary=True,
        )

    def _plan(self, spec: BotSpec) -> Plan:
        lifecycle = spec.lifecycle if spec.lifecycle is not None else self.config.lifecycle
        assert isinstance(lifecycle, Lifecycle)
        hours = self._retention_of(spec)
        # A timed retention starts when the recording is done (§8); hours are wall-clock
        # hours whatever the time scale.
        kept_us = None if hours is None or hours == FOREVER else round(float(hours) * 3600 * US)
        return build_plan(
            lifecycle,
            self.config.time_scale,
            spec.outcome,
            spec.sub_code,
            spec.recordings,
            retention_us=kept_us,
        )

    def _retention_of(self, spec: BotSpec) -> Retention:
        return spec.retention if spec.retention is not None else self.config.retention_hours

    def retention(self, bot: BotEntry) -> Retention:
        """The bot's own retention, else the workspace's (None: kept forever, not set)."""
        return self._retention_of(bot.spec)

    # ---- recordings and video_separates -----------------------------------------------------

    def recording(self, bot: BotEntry, index: int) -> RecordingEntry:
        ref = Ref(bot.index, index)
        return RecordingEntry(
            bot=bot,
            index=index,
            id=self.codec.encode(Kind.RECORDING, ref),
            video_separate_id=self.codec.encode(Kind.VIDEO_SEPARATE, ref),
            plan=bot.plan.recordings[index],
        )

    def recordings(self, bot: BotEntry) -> list[RecordingEntry]:
        return [self.recording(bot, j) for j in range(len(bot.plan.recordings))]

    def _lookup_recording(self, kind: Kind, text: str) -> RecordingEntry | None:
        ref = self.codec.decode(kind, text)
        bot = None if ref is None or ref.part else self.bot(ref.bot)
        if bot is None or ref is None or ref.recording >= len(bot.plan.recordings):
            return None
        return self.recording(bot, ref.recording)

    def recording_by_id_any_time(self, recording_id: str) -> RecordingEntry | None:
        """The recording an id names, even if it does not exist yet (for filters)."""
        return self._lookup_recording(Kind.RECORDING, recording_id)

    def recording_by_id(self, recording_id: str) -> RecordingEntry | None:
        found = self._lookup_recording(Kind.RECORDING, recording_id)
        return found if found is not None and found.exists(self.clock.now_us()) else None

    def video_separate_by_id(self, vs_id: str) -> RecordingEntry | None:
        found = self._lookup_recording(Kind.VIDEO_SEPARATE, vs_id)
        return found if found is not None and found.vs_exists(self.clock.now_us()) else None

    # ---- parts ------------------------------------------------------------------------------

    def parts(self, recording: RecordingEntry) -> tuple[PartEntry, ...]:
        return self._parts(recording.bot.index, recording.index)

    def part_by_id(self, part_id: str) -> PartEntry | None:
        ref = self.codec.decode(Kind.PART, part_id)
        bot = None if ref is None else self.bot(ref.bot)
        if bot is None or ref is None or ref.recording >= len(bot.plan.recordings):
            return None
        parts = self.parts(self.recording(bot, ref.recording))
        return parts[ref.part] if ref.part < len(parts) else None

    def _build_parts(self, bot_index: int, recording_index: int) -> tuple[PartEntry, ...]:
        bot = self.bot(bot_index)
        assert bot is not None
        recording = self.recording(bot, recording_index)
        size = bot.spec.part_size or self.config.part_size
        start, end = recording.created_us, recording.completed_us
        slots: list[tuple[ParticipantSpec, str, int, int]] = []
        for participant in bot.spec.participants:
            slots += _spread(participant, "webcam", participant.parts, start, end)
            quarter = (end - start) // 4
            slots += _spread(
                participant,
                "screenshare",
                participant.screenshare_parts,
                start + quarter,
                end - quarter,
            )
        if len(slots) > MAX_PARTS_PER_RECORDING:
            raise ValueError("too many parts in one recording")
        return tuple(
            PartEntry(
                recording=recording,
                index=k,
                id=self.codec.encode(Kind.PART, Ref(bot.index, recording.index, k)),
                participant=participant,
                type=kind,
                start_us=part_start,
                duration=duration_us / US,
                size=size,
            )
            for k, (participant, kind, part_start, duration_us) in enumerate(slots)
        )

    def part_version(self, part_id: str) -> tuple[int, int | None]:
        """(version, µs of the last change or None if never changed)."""
        version, changed = self._versions.get(part_id, (0, 0))
        return version, (changed if version else None)

    def bump_version(self, part_id: str) -> int:
        version = self._versions.get(part_id, (0, 0))[0] + 1
        self._versions[part_id] = (version, self.clock.now_us())
        return version

    def media_object(self, part: PartEntry) -> mp4.Mp4Object:
        return self._objects(part.id, self.part_version(part.id)[0], part.size)

    def _build_object(self, part_id: str, version: int, size: int) -> mp4.Mp4Object:
        part = self.part_by_id(part_id)
        assert part is not None
        return mp4.build(
            size,
            f"{self.config.seed}:{part_id}:v{version}",
            self.block,
            duration_seconds=part.duration,
            created_unix=part.start_us // US,
        )

    @cached_property
    def ordinary_ids(self) -> list[str]:
        return [self.codec.encode(Kind.BOT, Ref(i)) for i in range(self.ordinary_count)]


def _spread(
    participant: ParticipantSpec, kind: str, count: int, start: int, end: int
) -> list[tuple[ParticipantSpec, str, int, int]]:
    """``count`` consecutive parts across [start, end): a participant who left and rejoined."""
    if count <= 0:
        return []
    slot = max(1, (end - start) // count)
    length = slot if count == 1 else max(1, slot * 19 // 20)  # a small gap between rejoins
    return [(participant, kind, start + m * slot, length) for m in range(count)]
