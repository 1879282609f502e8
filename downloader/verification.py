"""Re-check files on disk against the sidecars that describe them (blocking; run in a thread)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from downloader.naming import SIDECAR_NAME

HASH_BLOCK = 1 << 20


@dataclass(frozen=True)
class Problem:
    part_id: str
    recording_id: str
    path: Path
    # "missing" | "size differs" | "sha256 differs" | "outside output folder" |
    # "sidecar unreadable: <why>"
    what: str


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while block := handle.read(HASH_BLOCK):
            digest.update(block)
    return digest.hexdigest()


def sidecars(out: Path) -> Iterator[Path]:
    # Layout is <out>/<bot>/<recording>/manifest.json: exactly two levels down.
    yield from sorted(out.glob(f"*/*/{SIDECAR_NAME}"))


def _read_sidecar(sidecar: Path) -> tuple[dict[str, Any] | None, str]:
    """The sidecar's object with a list of part objects, or None and why it is unusable."""
    try:
        data = json.loads(sidecar.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        return None, f"sidecar unreadable: {exc}"
    if not isinstance(data, dict):
        return None, "sidecar unreadable: not a JSON object"
    parts = data.get("parts")
    if not isinstance(parts, list) or not all(isinstance(entry, dict) for entry in parts):
        return None, "sidecar unreadable: no list of parts"
    return data, ""


def check_sidecar(out: Path, sidecar: Path) -> tuple[int, list[Problem]]:
    """Returns (parts checked, problems found); a damaged sidecar is one problem."""
    data, why = _read_sidecar(sidecar)
    if data is None:  # <out>/<bot>/<recording>/manifest.json: the folder names the recording
        return 0, [Problem("-", sidecar.parent.name, sidecar, why)]
    recording_id = str(data.get("recording_id") or sidecar.parent.name)
    problems: list[Problem] = []
    parts: list[dict[str, Any]] = data["parts"]
    root = out.resolve()
    for entry in parts:
        path = sidecar.parent / str(entry.get("path"))
        part_id = str(entry.get("id"))
        if not path.resolve().is_relative_to(root):
            problems.append(Problem(part_id, recording_id, path, "outside output folder"))
        elif not path.is_file():
            problems.append(Problem(part_id, recording_id, path, "missing"))
        elif path.stat().st_size != entry.get("bytes"):
            problems.append(Problem(part_id, recording_id, path, "size differs"))
        elif sha256_file(path) != entry.get("sha256"):
            problems.append(Problem(part_id, recording_id, path, "sha256 differs"))
    return len(parts), problems
