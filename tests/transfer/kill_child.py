"""Child process for the SIGKILL test: one ``download_part`` whose checkpoints go to a file.

``python kill_child.py URL FINAL CHECKPOINT_FILE API_URL CHECKPOINT_BYTES`` — the checkpoint
file plays the job store: written atomically and fsynced before the callback returns.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import anyio

from downloader.transfer import Checkpoint, TransferSettings, download_part, open_media_session
from downloader.urlpolicy import UrlPolicy


def store(path: Path, checkpoint: Checkpoint) -> None:
    tmp = path.with_suffix(".tmp")
    with tmp.open("w") as handle:
        json.dump(checkpoint.to_json(), handle)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


async def main(url: str, final: Path, state: Path, api_url: str, checkpoint_bytes: int) -> None:
    settings = TransferSettings(
        chunk_bytes=64 << 10, write_buffer_bytes=64 << 10, checkpoint_bytes=checkpoint_bytes
    )
    saved = None
    if os.path.exists(state):  # noqa: ASYNC240 - start-up, before any transfer
        with open(state) as handle:  # noqa: ASYNC230
            saved = Checkpoint.from_json(json.load(handle))

    async def on_checkpoint(checkpoint: Checkpoint) -> None:
        await anyio.to_thread.run_sync(store, state, checkpoint)

    async with open_media_session(settings) as media:
        result = await download_part(
            media,
            url,
            final,
            checkpoint=saved,
            on_checkpoint=on_checkpoint,
            settings=settings,
            policy=UrlPolicy.for_api(api_url),
        )
    print(json.dumps({"sha256": result.sha256, "bytes": result.bytes}))


if __name__ == "__main__":
    args = sys.argv[1:]
    anyio.run(main, args[0], Path(args[1]), Path(args[2]), args[3], int(args[4]))
