"""Value types parsed from Recall JSON (pure).

Parsers read only the fields recall-dl uses, ignore everything else, and keep status codes
as plain strings: Recall documents its codes as open-ended, so a code we have never seen
must flow through as data, not crash a parser. A missing or mistyped *required* field is an
:class:`InvalidResponse` naming the field.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from downloader.errors import InvalidResponse

BOT_DONE = "done"
BOT_FATAL = "fatal"
MEDIA_PROCESSING = "processing"
MEDIA_DONE = "done"
MEDIA_FAILED = "failed"
MEDIA_DELETED = "deleted"


def _obj(value: object, where: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise InvalidResponse(f"{where}: expected a JSON object")
    return value


def _str(data: Mapping[str, Any], key: str, where: str) -> str:
    value = data.get(key)
    if not isinstance(value, str) or not value:
        raise InvalidResponse(f"{where}: field {key!r} must be a non-empty string")
    return value


def _opt_str(data: Mapping[str, Any], key: str) -> str | None:
    value = data.get(key)
    return value if isinstance(value, str) else None


def _opt_obj(data: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    value = data.get(key)
    return value if isinstance(value, Mapping) else {}


def _number(data: Mapping[str, Any], key: str, where: str) -> float:
    value = data.get(key)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidResponse(f"{where}: field {key!r} must be a number")
    return float(value)


@dataclass(frozen=True)
class Status:
    code: str
    sub_code: str | None
    updated_at: str | None

    @classmethod
    def parse(cls, data: object, where: str) -> Status:
        obj = _obj(data, where)
        return cls(
            code=_str(obj, "code", where),
            sub_code=_opt_str(obj, "sub_code"),
            updated_at=_opt_str(obj, "updated_at") or _opt_str(obj, "created_at"),
        )


@dataclass(frozen=True)
class RecordingRef:
    id: str
    status: Status | None
    created_at: str | None
    expires_at: str | None
    metadata: Mapping[str, Any] = field(default_factory=dict)
    bot_id: str | None = None  # Retrieve/List Recording carry ``bot: {id, metadata} | null``

    @classmethod
    def parse(cls, data: object, where: str = "recording") -> RecordingRef:
        obj = _obj(data, where)
        status = obj.get("status")
        bot = obj.get("bot")
        bot_id = bot.get("id") if isinstance(bot, Mapping) else bot
        return cls(
            id=_str(obj, "id", where),
            status=Status.parse(status, f"{where}.status") if isinstance(status, Mapping) else None,
            created_at=_opt_str(obj, "created_at"),
            expires_at=_opt_str(obj, "expires_at"),
            metadata=_opt_obj(obj, "metadata"),
            bot_id=bot_id if isinstance(bot_id, str) and bot_id else None,
        )


@dataclass(frozen=True)
class Bot:
    id: str
    status_changes: tuple[Status, ...]
    recordings: tuple[RecordingRef, ...]
    metadata: Mapping[str, Any] = field(default_factory=dict)

    @property
    def status(self) -> Status | None:
        """A bot has no top-level status: its state is the last ``status_changes`` entry."""
        return self.status_changes[-1] if self.status_changes else None

    @classmethod
    def parse(cls, data: object) -> Bot:
        obj = _obj(data, "bot")
        changes = obj.get("status_changes") or []
        recordings = obj.get("recordings") or []
        if not isinstance(changes, list) or not isinstance(recordings, list):
            raise InvalidResponse("bot: status_changes and recordings must be lists")
        return cls(
            id=_str(obj, "id", "bot"),
            status_changes=tuple(
                Status.parse(c, f"bot.status_changes[{i}]") for i, c in enumerate(changes)
            ),
            recordings=tuple(
                RecordingRef.parse(r, f"bot.recordings[{i}]") for i, r in enumerate(recordings)
            ),
            metadata=_opt_obj(obj, "metadata"),
        )


@dataclass(frozen=True)
class VideoSeparate:
    id: str
    recording_id: str | None
    status: Status
    download_url: str | None  # the JSON parts manifest, present once status is done
    created_at: str | None
    metadata: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def parse(cls, data: object) -> VideoSeparate:
        obj = _obj(data, "video_separate")
        recording = obj.get("recording")
        rec_id = recording.get("id") if isinstance(recording, Mapping) else recording
        return cls(
            id=_str(obj, "id", "video_separate"),
            recording_id=rec_id if isinstance(rec_id, str) else None,
            status=Status.parse(obj.get("status"), "video_separate.status"),
            download_url=_opt_str(_opt_obj(obj, "data"), "download_url"),
            created_at=_opt_str(obj, "created_at"),
            metadata=_opt_obj(obj, "metadata"),
        )


@dataclass(frozen=True)
class Participant:
    id: int
    name: str | None  # display text, never a path
    is_host: bool | None
    platform: str | None
    email: str | None

    @classmethod
    def parse(cls, data: object, where: str) -> Participant:
        obj = _obj(data, where)
        pid = obj.get("id")
        if isinstance(pid, bool) or not isinstance(pid, int):
            raise InvalidResponse(f"{where}: field 'id' must be an integer")
        is_host = obj.get("is_host")
        return cls(
            id=pid,
            name=_opt_str(obj, "name"),
            is_host=is_host if isinstance(is_host, bool) else None,
            platform=_opt_str(obj, "platform"),
            email=_opt_str(obj, "email"),
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "is_host": self.is_host,
            "platform": self.platform,
            "email": self.email,
        }


@dataclass(frozen=True)
class Part:
    """One MP4 of one participant, as listed in the video_separate manifest."""

    id: str
    participant: Participant
    type: str  # "webcam" | "screenshare" (kept open-ended)
    start_absolute: str | None
    start_relative: float
    duration: float
    download_url: str

    @classmethod
    def parse(cls, data: object, index: int) -> Part:
        where = f"manifest[{index}]"
        obj = _obj(data, where)
        start = _obj(obj.get("start_timestamp"), f"{where}.start_timestamp")
        return cls(
            id=_str(obj, "id", where),
            participant=Participant.parse(obj.get("participant"), f"{where}.participant"),
            type=_opt_str(obj, "type") or "unknown",
            start_absolute=_opt_str(start, "absolute"),
            start_relative=_number(start, "relative", f"{where}.start_timestamp"),
            duration=_number(obj, "duration", where),
            download_url=_str(obj, "download_url", where),
        )

    def start_timestamp_json(self) -> dict[str, Any]:
        return {"absolute": self.start_absolute, "relative": self.start_relative}


def parse_manifest(data: object) -> list[Part]:
    """The manifest is a JSON array of parts; part ids must be unique within it."""
    if not isinstance(data, Sequence) or isinstance(data, str | bytes):
        raise InvalidResponse("manifest: expected a JSON array of parts")
    parts = [Part.parse(item, i) for i, item in enumerate(data)]
    seen: set[str] = set()
    for part in parts:
        if part.id in seen:
            raise InvalidResponse(f"manifest: part id {part.id!r} appears twice")
        seen.add(part.id)
    return parts


@dataclass(frozen=True)
class Page:
    """One page of a list endpoint, either pagination kind."""

    results: tuple[Mapping[str, Any], ...]
    next_url: str | None
    count: int | None

    @classmethod
    def parse(cls, data: object, where: str) -> Page:
        obj = _obj(data, where)
        results = obj.get("results")
        if not isinstance(results, list):
            raise InvalidResponse(f"{where}: field 'results' must be a list")
        count = obj.get("count")
        return cls(
            results=tuple(_obj(r, f"{where}.results[]") for r in results),
            next_url=_opt_str(obj, "next"),
            count=count if isinstance(count, int) and not isinstance(count, bool) else None,
        )
