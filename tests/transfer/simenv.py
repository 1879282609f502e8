"""Shared set-up for transfer tests against the simulator (imported lazily)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio

from downloader.transfer import (
    Checkpoint,
    TransferSettings,
    download_part,
    open_media_session,
    partial_path,
)
from downloader.transfer.engine import OnCheckpoint
from downloader.urlpolicy import UrlPolicy

SMALL = TransferSettings(
    chunk_bytes=64 << 10,
    write_buffer_bytes=64 << 10,
    checkpoint_bytes=256 << 10,
    connect_timeout=5.0,
    read_timeout=5.0,
)


@dataclass
class Checkpoints:
    """An ``on_checkpoint`` callback that remembers what the job store would hold."""

    seen: list[Checkpoint] = field(default_factory=list)

    async def __call__(self, checkpoint: Checkpoint) -> None:
        self.seen.append(checkpoint)

    @property
    def last(self) -> Checkpoint | None:
        return self.seen[-1] if self.seen else None


@dataclass
class Env:
    sim: Any
    recording_id: str
    part: dict[str, Any]
    policy: UrlPolicy

    @property
    def part_id(self) -> str:
        return str(self.part["id"])

    @property
    def url(self) -> str:
        return str(self.part["download_url"])

    def fresh_url(self) -> str:
        """Re-read the manifest (mints new URLs) and match the part by id."""
        for entry in self.sim.parts(self.recording_id):
            if str(entry["id"]) == self.part_id:
                return str(entry["download_url"])
        raise AssertionError(f"part {self.part_id} vanished from the manifest")

    def content(self) -> bytes:
        return bytes(self.sim.part_content(self.part_id))

    def sha256(self) -> str:
        return str(self.sim.part_sha256(self.part_id))

    def media_stats(self) -> dict[str, Any]:
        return dict(self.sim.stats()["media"])

    def served(self) -> int:
        return int(self.media_stats()["bytes_served_per_part"].get(self.part_id, 0))

    def violations(self) -> dict[str, int]:
        return dict(self.sim.stats()["violations"])

    def media_log(self) -> list[dict[str, Any]]:
        return [e for e in self.sim.request_log() if e.get("host") in ("media", "redirect")]


@asynccontextmanager
async def one_part(
    *, part_size: int = 1 << 20, throttle: int | None = None, faults: Any = None
) -> AsyncIterator[Env]:
    from downloader.simulator import FaultConfig, Simulator, SimulatorConfig

    config = SimulatorConfig(
        bots=1,
        participants_per_bot=1,
        parts_per_participant=1,
        part_size=part_size,
        seed=1,
        time_scale=0,
        faults=faults if faults is not None else FaultConfig(),
        throttle_bytes_per_sec=throttle,
    )
    async with Simulator(config) as sim:
        bot_id = sim.bot_ids[0]
        recording_id = sim.recording_ids(bot_id)[0]
        part = sim.parts(recording_id)[0]
        yield Env(sim, recording_id, part, UrlPolicy.for_api(sim.api_url))


def final_path(tmp_path: Path, name: str = "part.mp4") -> Path:
    return tmp_path / "out" / name


def faults(**knobs: Any) -> Any:
    from downloader.simulator import FaultConfig

    return FaultConfig(**knobs)


async def fetch(
    env: Env,
    path: Path,
    *,
    checkpoint: Checkpoint | None = None,
    cps: OnCheckpoint | None = None,
    settings: TransferSettings = SMALL,
    url: str | None = None,
) -> str:
    async with open_media_session(settings) as media:
        result = await download_part(
            media,
            url or env.url,
            path,
            checkpoint=checkpoint,
            on_checkpoint=cps,
            settings=settings,
            policy=env.policy,
        )
    assert result.path == path
    assert result.bytes == len(env.content())
    return result.sha256


def assert_clean(env: Env, path: Path, sha: str) -> None:
    assert sha == env.sha256()
    assert path.read_bytes() == env.content()
    assert not partial_path(path).exists()
    violations = env.violations()
    assert violations["auth_to_media"] == 0
    assert violations["redirect_followed"] == 0


async def wait_served(env: Env, at_least: int) -> int:
    """Poll the simulator's byte counter for this part (the server is the witness)."""
    with anyio.fail_after(30):
        while (sent := env.served()) < at_least:  # noqa: ASYNC110 - a counter, not an event
            await anyio.sleep(0.001)
    return sent
