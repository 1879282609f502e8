"""Worker pools that can grow and shrink while the service runs (SIGHUP changes concurrency).

Each worker is the pipeline's ``worker_loop`` with a stop event of its own: shrinking sets
the events of the newest workers, which finish the job in hand and return; draining sets
them all. Nothing is ever taken from a worker mid-job.
"""

from __future__ import annotations

from collections.abc import Collection

import anyio
from anyio.abc import TaskGroup

from downloader.lifecycle import JobKind
from downloader.pipeline import PipelineContext, worker_loop


class WorkerPool:
    def __init__(self, name: str, ctx: PipelineContext, kinds: Collection[JobKind]) -> None:
        self.name = name
        self._ctx = ctx
        self._kinds = frozenset(kinds)
        self._stops: list[anyio.Event] = []
        self._started = 0

    @property
    def size(self) -> int:
        return len(self._stops)

    def resize(self, group: TaskGroup, size: int) -> None:
        while len(self._stops) < size:
            stop = anyio.Event()
            self._stops.append(stop)
            self._started += 1
            group.start_soon(
                worker_loop, self._ctx, self._kinds, stop, name=f"{self.name}-{self._started}"
            )
        while len(self._stops) > size:
            self._stops.pop().set()
        self._ctx.wake_workers()  # idle workers notice their stop event at once

    def stop(self) -> None:
        for event in self._stops:
            event.set()
        self._stops.clear()
        self._ctx.wake_workers()
