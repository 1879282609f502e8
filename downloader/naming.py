"""The on-disk layout and safe file names (pure).

::

    <out>/<bot_id>/<recording_id>/manifest.json
    <out>/<bot_id>/<recording_id>/<participant_id>-<name slug>/<start ms>-<type>-<part id>.mp4

Every path component is built from validated ids and slugs. A participant name is display
text chosen by whoever joined the meeting: it reaches the disk only as a bounded slug, always
behind the participant's numeric id, so two people with the same name never share a folder
and no name can climb out of the output root.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
import uuid
from pathlib import Path, PurePosixPath

from downloader.errors import ConfigError, UnsafePath

SIDECAR_NAME = "manifest.json"
PARTIAL_SUFFIX = ".part"
MAX_SLUG_CHARS = 48
_SAFE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,127}$")
_SEPARATOR_RUN = re.compile(r"-{2,}")


def canonical_id(text: str) -> str | None:
    """A Recall id (a UUID) in its canonical lowercase form, or None if it is not one."""
    try:
        return str(uuid.UUID(text.strip()))
    except ValueError:
        return None


def validate_bot_id(text: str) -> str:
    """Bot ids given on the command line must be UUIDs; returns the canonical lowercase form."""
    bot_id = canonical_id(text)
    if bot_id is None:
        raise ConfigError(
            f"{text!r} is not a bot id: Recall bot ids are UUIDs such as "
            "8a5f6e0c-1b2d-4c3e-9f00-123456789abc"
        )
    return bot_id


def safe_id(remote_id: str) -> str:
    """A remote id as a path component: kept when already safe, else a slug plus a short hash."""
    if _SAFE_ID.match(remote_id):
        return remote_id
    digest = hashlib.sha256(remote_id.encode("utf-8", "surrogatepass")).hexdigest()[:12]
    return f"{slugify(remote_id, limit=32) or 'id'}-{digest}"


def slugify(text: str | None, *, limit: int = MAX_SLUG_CHARS) -> str:
    """Letters and digits of any script, '.', '_' and '-'; everything else becomes '-'.

    Control, format (bidi overrides, zero-width) and separator characters never survive;
    the result never starts with '.' or '-' so it can be neither hidden nor '..'.
    """
    if not text:
        return ""
    normalised = unicodedata.normalize("NFKC", text)
    # isalnum() is False for control, format, separator and punctuation characters alike.
    out = [char if char.isalnum() or char in "._" else "-" for char in normalised]
    slug = _SEPARATOR_RUN.sub("-", "".join(out)).strip(".-_")
    slug = slug[:limit].rstrip(".-_")
    # Keep well under the usual 255-byte file-name limit even for 4-byte characters.
    while len(slug.encode("utf-8")) > limit * 2:
        slug = slug[:-1]
    return slug


def participant_dir(participant_id: int, name: str | None) -> str:
    slug = slugify(name)
    return f"{participant_id}-{slug or 'unknown'}"


def part_file_name(start_relative: float, part_type: str, part_id: str) -> str:
    """Zero-padded start offset in milliseconds first, so names sort in time order."""
    millis = max(0, round(start_relative * 1000))
    kind = slugify(part_type, limit=16) or "video"
    return f"{millis:010d}-{kind}-{safe_id(part_id)}.mp4"


def recording_dir(out: Path, bot_id: str, recording_id: str) -> Path:
    return out / safe_id(bot_id) / safe_id(recording_id)


def part_relative_path(
    participant_id: int, name: str | None, start_relative: float, part_type: str, part_id: str
) -> PurePosixPath:
    """Path of a part relative to its recording folder (as written in the sidecar)."""
    return PurePosixPath(participant_dir(participant_id, name)) / part_file_name(
        start_relative, part_type, part_id
    )


def ensure_inside(root: Path, candidate: Path) -> Path:
    """Defence in depth: refuse any path that resolves outside the output root."""
    resolved_root = root.resolve()
    resolved = candidate.resolve()
    if not resolved.is_relative_to(resolved_root):
        raise UnsafePath(f"refusing to write outside the output folder: {candidate}")
    return candidate


def partial_path(final: Path) -> Path:
    return final.with_name(final.name + PARTIAL_SUFFIX)
