"""SIGKILL a downloading process mid-body, start it again: byte-identical, little re-sent."""

from __future__ import annotations

import json
import os
import random
import signal
import sys
from pathlib import Path

import anyio
import pytest

from downloader.transfer import Checkpoint, partial_path
from tests.transfer.simenv import Env, one_part

pytestmark = [pytest.mark.anyio, pytest.mark.slow]

CHILD = Path(__file__).with_name("kill_child.py")
ROOT = Path(__file__).resolve().parents[2]
CHECKPOINT_BYTES = 1 << 20
PART_SIZE = 6 << 20
RATE = 6 << 20  # bytes/s: slow enough to kill mid-body, fast enough for a short test
# Sent by the server but not yet read by the child when the kill lands: the simulator's
# 64 KiB writes plus socket buffers, which fill when the child is starved of CPU.
IN_FLIGHT = 512 << 10


async def run_child(env: Env, final: Path, state: Path, kill_at: int | None) -> str | int:
    """Run the child; SIGKILL it once the server's cumulative count reaches ``kill_at``.

    Returns the SHA-256 it printed, or the server's byte count when the kill was sent."""
    command = [sys.executable, str(CHILD), env.url, str(final), str(state), env.sim.api_url]
    environment = {**os.environ, "PYTHONPATH": str(ROOT)}
    async with await anyio.open_process(
        [*command, str(CHECKPOINT_BYTES)], env=environment, cwd=ROOT
    ) as process:
        if kill_at is None:
            out = b""
            assert process.stdout is not None
            async for data in process.stdout:
                out += data
            assert await process.wait() == 0
            return str(json.loads(out.splitlines()[-1])["sha256"])  # after the log lines
        with anyio.fail_after(30):
            while (sent := env.served()) < kill_at:  # poll the server's counter, then kill
                assert process.returncode is None, "child finished before the kill point"
                await anyio.sleep(0.001)
        process.send_signal(signal.SIGKILL)
        assert await process.wait() == -signal.SIGKILL
        return sent


async def test_sigkill_mid_body_then_resume(tmp_path: Path) -> None:
    rng = random.Random(7)
    kill_points = [
        2 * CHECKPOINT_BYTES + rng.randrange(1 << 16),  # just after a checkpoint
        5 * CHECKPOINT_BYTES - rng.randrange(1 << 16),  # just before one
    ]
    async with one_part(part_size=PART_SIZE, throttle=RATE) as env:
        final = tmp_path / "out" / "part.mp4"
        state = tmp_path / "checkpoint.json"
        resumed_at: list[int] = []
        start = 0  # offset this run resumes from
        for kill_offset in kill_points:
            before = env.served()
            sent = await run_child(env, final, state, before + kill_offset - start)
            assert isinstance(sent, int)
            reached = start + sent - before  # part offset the server had sent up to
            assert not final.exists()
            saved = Checkpoint.from_json(json.loads(state.read_text()))
            on_disk = partial_path(final).stat().st_size  # the page cache survives SIGKILL
            # written but not covered by the durable checkpoint: at most one interval (equal
            # when the kill lands between an fsync and the store's acknowledgement)
            assert saved.offset <= on_disk <= saved.offset + CHECKPOINT_BYTES
            # sent by the server when the kill was issued, beyond the checkpoint: one interval
            # plus what was still in flight (socket buffers, aiohttp's read buffer)
            assert reached - saved.offset <= CHECKPOINT_BYTES + IN_FLIGHT, (saved, reached)
            assert saved.offset > start
            resumed_at.append(saved.offset)
            start = saved.offset
        sha = await run_child(env, final, state, None)
        assert sha == env.sha256()
        assert final.read_bytes() == env.content()
        assert not partial_path(final).exists()
        media = [e for e in env.sim.request_log() if e["host"] == "media"]
        assert [e["status"] for e in media] == [200, 206, 206]
        assert [e["range"] for e in media[1:]] == [f"bytes={o}-" for o in resumed_at]
        # (the server's grand total also counts what it pushed into the dead socket after each
        # kill, before it saw the reset; that is not the client's doing, so it is not bounded)
        assert env.violations()["auth_to_media"] == 0
