"""A reference, not a downloader: the same files written durably, with no network and no hash.

``python -m bench.transfer.durable --list list.txt --source DIR --out DIR --concurrency 8``

Each line of the list is ``URL<TAB>relative/output/name``; the URL's path names the source
file under ``--source`` (the files nginx serves, already in the page cache). Threads copy
them in 256 KiB reads with our engine's durability discipline: an fsync every 4 MiB and
before the rename, then a directory fsync. What this reaches is about the most any tool
that makes its data durable the way ours does can reach on this disk and CPU; curl and
aria2c leave their data in the page cache and are not bound by it.
"""

from __future__ import annotations

import argparse
import os
import queue
import threading
from pathlib import Path
from urllib.parse import urlsplit

READ_BYTES = 256 << 10
CHECKPOINT_BYTES = 4 << 20


def copy_durably(source: Path, final: Path) -> None:
    partial = final.with_name(final.name + ".part")
    with source.open("rb", buffering=0) as reader:
        fd = os.open(partial, os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
        try:
            written = 0
            while data := reader.read(READ_BYTES):
                os.write(fd, data)
                before, written = written, written + len(data)
                if written // CHECKPOINT_BYTES != before // CHECKPOINT_BYTES:
                    os.fsync(fd)
            os.fsync(fd)
        finally:
            os.close(fd)
    os.replace(partial, final)
    directory = os.open(final.parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--list", type=Path, required=True)
    parser.add_argument("--source", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--concurrency", type=int, default=8)
    args = parser.parse_args()
    jobs: queue.SimpleQueue[tuple[Path, Path]] = queue.SimpleQueue()
    for line in args.list.read_text().splitlines():
        url, name = line.split("\t")
        jobs.put((args.source / urlsplit(url).path.lstrip("/"), args.out / name))
    errors: list[BaseException] = []

    def worker() -> None:
        while True:
            try:
                source, final = jobs.get_nowait()
            except queue.Empty:
                return
            try:
                copy_durably(source, final)
            except BaseException as exc:  # reported by the main thread
                errors.append(exc)
                return

    threads = [threading.Thread(target=worker) for _ in range(args.concurrency)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]


if __name__ == "__main__":
    main()
