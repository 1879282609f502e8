"""Run `recall-dl backfill` in this process with a job store that counts its operations.

Used by ``bench.py`` as a subprocess, so that its peak RSS is the command's own. Writes
``{"ops": {...}, "seconds": ...}`` to the file named by ``RECALL_DL_BENCH_STATS``.
"""

from __future__ import annotations

import json
import os
import resource
import sys
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import downloader.app
from downloader.cli import main
from downloader.store.protocol import JobStore

OPS: Counter[str] = Counter()


class CountingStore:
    """Every awaited JobStore method counts as one store operation."""

    def __init__(self, inner: JobStore) -> None:
        self._inner = inner

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._inner, name)
        if not callable(attr) or name.startswith("_"):
            return attr

        async def counted(*args: Any, **kwargs: Any) -> Any:
            OPS[name] += 1
            return await attr(*args, **kwargs)

        return counted


def counting(open_store: Callable[..., Any]) -> Callable[..., Any]:
    async def wrapped(*args: Any, **kwargs: Any) -> Any:
        return CountingStore(await open_store(*args, **kwargs))

    return wrapped


if __name__ == "__main__":
    downloader.app.open_store = counting(downloader.app.open_store)  # type: ignore[attr-defined]
    started = time.perf_counter()
    if os.environ.get("RECALL_DL_BENCH_PROFILE"):
        import cProfile

        profiler = cProfile.Profile()
        code = profiler.runcall(main, sys.argv[1:])
        profiler.dump_stats(os.environ["RECALL_DL_BENCH_PROFILE"])
    else:
        code = main(sys.argv[1:])
    with open(os.environ["RECALL_DL_BENCH_STATS"], "w") as handle:
        usage = resource.getrusage(resource.RUSAGE_SELF)
        json.dump(
            {
                "ops": dict(OPS),
                "seconds": time.perf_counter() - started,
                "peak_rss_kib": usage.ru_maxrss,  # KiB on Linux
                "cpu_seconds": usage.ru_utime + usage.ru_stime,
                "profile": os.environ.get("RECALL_DL_BENCH_PROFILE", ""),
            },
            handle,
        )
    sys.exit(code)
