"""JSON bodies in Recall's v1.11 shapes (recall-api.md §2, §4, §5), computed at read time.

Download links are minted on every read, like Recall's: the manifest link when a
video_separate is rendered, a fresh pre-signed media URL per part when a manifest is read.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from .clock import US, iso
from .config import FOREVER, SimulatorConfig
from .ids import Kind, Ref
from .signing import Signer
from .world import BotEntry, PartEntry, RecordingEntry, World

Json = dict[str, Any]
BUCKET = "recallai-sim-bot-data"
MANIFEST_PATH = "/api/v1/download/video_separate"


@dataclass
class Hosts:
    """Base URLs of the listeners, known once they are bound."""

    api: str = ""
    manifest: str = ""
    media: str = ""


def media_path(workspace: str, part: PartEntry) -> str:
    rec = part.recording
    return (
        f"/{BUCKET}/_workspace-{workspace}/recordings/{rec.id}/video_separate/"
        f"{rec.video_separate_id}/{part.id}/video.mp4"
    )


class Renderer:
    def __init__(self, world: World, signer: Signer, hosts: Hosts) -> None:
        self.world = world
        self.signer = signer
        self.hosts = hosts
        self.config: SimulatorConfig = world.config
        self.workspace = hashlib.sha256(f"ws:{world.config.seed}".encode()).hexdigest()[:32]

    # ---- bots -------------------------------------------------------------------------------

    def bot(self, bot: BotEntry, now: int) -> Json:
        spec = bot.spec
        changes = bot.changes(now)
        joined = any(c.code != "joining_call" for c in changes)
        recordings = [self.recording(r, now) for r in self.world.recordings(bot) if r.exists(now)]
        return {
            "id": bot.id,
            "meeting_url": {"meeting_id": f"sim-{bot.index:08d}", "platform": spec.platform},
            "bot_name": spec.bot_name,
            "join_at": None if joined else iso(bot.start_us),
            "recording_config": self._recording_config(bot),
            "status_changes": [
                {
                    "code": c.code,
                    "message": None,
                    "created_at": iso(bot.start_us + c.at),
                    "sub_code": c.sub_code,
                }
                for c in changes
            ],
            "recordings": recordings,
            "output_media": None,
            "automatic_video_output": None,
            "automatic_audio_output": None,
            "chat": {"on_bot_join": None, "on_participant_join": None},
            "automatic_leave": {
                "waiting_room_timeout": 1200,
                "noone_joined_timeout": 1200,
                "everyone_left_timeout": {"timeout": 2, "activate_after": None},
                "in_call_not_recording_timeout": 3600,
                "recording_permission_denied_timeout": 3600,
                "silence_detection": {"timeout": 3600, "activate_after": 1200},
                "bot_detection": None,
            },
            "variant": {spec.platform: "web_4_core"},
            "calendar_meetings": [],
            "zoom": None,
            "google_meet": None,
            "slack_team": None,
            "metadata": dict(spec.metadata),
        }

    def _recording_config(self, bot: BotEntry) -> Json:
        has_vs = bot.spec.outcome != "no_video_separate"
        return {
            "video_mixed_layout": "gallery_view_v2",
            "video_separate_mp4": {"metadata": {}} if has_vs else None,
            "video_mixed_mp4": {},
            "retention": self._retention(bot),
            "metadata": {},
            "transcript": None,
            "participant_events": {},
            "meeting_metadata": {},
            "start_recording_on": "participant_join",
            "realtime_endpoints": [],
        }

    def _retention(self, bot: BotEntry) -> Json | None:
        value = self.world.retention(bot)
        if value is None:
            return None
        if value == FOREVER:
            return {"type": "forever"}
        hours = float(value)
        return {"type": "timed", "hours": int(hours) if hours.is_integer() else hours}

    # ---- recordings -------------------------------------------------------------------------

    def recording(self, rec: RecordingEntry, now: int, *, detail: bool = False) -> Json:
        code, updated = rec.status(now)
        completed = rec.completed_us if now >= rec.completed_us else None
        # The retention clock starts once the recording is done; until then nothing expires.
        expires = rec.expires_us if code in ("done", "deleted") else None
        body: Json = {
            "id": rec.id,
            "created_at": iso(rec.created_us),
            "started_at": iso(rec.created_us),
            "completed_at": None if completed is None else iso(completed),
            "expires_at": None if expires is None else iso(expires),  # null: kept forever
            "status": {"code": code, "sub_code": None, "updated_at": iso(updated)},
            "media_shortcuts": self._shortcuts(rec, now, code, updated),
            "metadata": {},
        }
        if detail:
            body["realtime_endpoints"] = []
            body["bot"] = {"id": rec.bot.id, "metadata": dict(rec.bot.spec.metadata)}
            body["desktop_sdk_upload"] = None
        return body

    def _shortcuts(self, rec: RecordingEntry, now: int, code: str, updated: int) -> Json:
        # video_separate is deliberately absent: Recall lists it only through its own endpoint.
        meta_id = self.world.codec.encode(Kind.MEETING_METADATA, Ref(rec.bot.index, rec.index))
        return {
            "video_mixed": None,
            "transcript": None,
            "participant_events": None,
            "meeting_metadata": {
                "id": meta_id,
                "created_at": iso(rec.created_us),
                "status": {"code": code, "sub_code": None, "updated_at": iso(updated)},
                "metadata": {},
                "data": {"title": f"Simulated meeting {rec.bot.index}", "zoom": None},
            },
        }

    # ---- video_separate and its manifest ----------------------------------------------------

    def video_separate(self, rec: RecordingEntry, now: int) -> Json:
        code, sub_code, updated = rec.vs_status(now)
        created = rec.vs_created_us
        assert created is not None
        url = None
        if code == "done":
            token = self.signer.manifest_token(
                rec.video_separate_id, now, self.config.url_ttl_seconds
            )
            url = f"{self.hosts.manifest}{MANIFEST_PATH}?{urlencode({'token': token})}"
        return {
            "id": rec.video_separate_id,
            "recording": {"id": rec.id, "metadata": {}},
            "created_at": iso(created),
            "status": {"code": code, "sub_code": sub_code, "updated_at": iso(updated)},
            "metadata": {},
            "data": {"download_url": url},
            "format": "mp4",
        }

    def manifest(self, rec: RecordingEntry, now: int) -> list[Json]:
        in_call = rec.bot.plan.in_call_at
        origin = rec.bot.start_us + (in_call or 0)
        return [self.part(part, now, origin) for part in self.world.parts(rec)]

    def part(self, part: PartEntry, now: int, origin_us: int) -> Json:
        p = part.participant
        return {
            "id": part.id,
            "participant": {
                "id": p.id,
                "name": p.name,
                "is_host": p.is_host,
                "platform": p.platform,
                "extra_data": None if p.extra_data is None else dict(p.extra_data),
                "email": p.email,
            },
            "start_timestamp": {
                "absolute": iso(part.start_us),
                "relative": (part.start_us - origin_us) / US,
            },
            "duration": part.duration,
            "type": part.type,
            "download_url": self.media_url(part, now),
        }

    def media_url(self, part: PartEntry, now: int) -> str:
        path = media_path(self.workspace, part)
        query = self.signer.media_query(path, now, self.config.url_ttl_seconds)
        return f"{self.hosts.media}{path}?{urlencode(query)}"
