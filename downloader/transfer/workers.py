"""Worker threads for the engine's blocking file work: one cheap hop per write buffer.

``anyio.to_thread.run_sync`` costs ~120-190 µs of event-loop CPU per call on the 2-vCPU
machines this runs on (a cancel scope, a capacity limiter, run-var look-ups and a
``Condition``-based queue); a small-file transfer made nine such hops and a large one one per
write buffer. This pool hands a call to an idle thread through a ``SimpleQueue`` and wakes
the loop with ``call_soon_threadsafe``: ~25 µs.

Semantics are anyio's default ones: a call is not cancellable once submitted. ``wait``
shields the caller until the thread has finished, returns its result (or raises its error),
and a pending cancellation is delivered at the caller's next checkpoint, so a file is never
closed, truncated or written again under a call still running on it.

``start`` submits without waiting, so a transfer can keep receiving while its previous batch
is written; the engine keeps at most one call in flight per file.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import threading
from collections.abc import Callable
from typing import Any, TypeVar

import anyio

T = TypeVar("T")
IDLE_SECONDS = 10.0  # an idle thread exits after this long (anyio's default too)

_Job = tuple[asyncio.AbstractEventLoop, "asyncio.Future[Any]", Callable[..., Any], tuple[Any, ...]]


def _settle(future: asyncio.Future[Any], result: Any, error: BaseException | None) -> None:
    if future.cancelled():
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)


class _Pool:
    """Threads are started on demand and never outnumber the calls ever in flight at once.

    ``_idle`` equals (threads waiting for work) - (calls queued), counted under ``_lock``;
    a call is queued without starting a thread only while that is positive, and a thread
    exits only when the queue is empty, so every queued call has a thread to run it.
    """

    def __init__(self) -> None:
        self._jobs: queue.SimpleQueue[_Job] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._idle = 0

    def submit(self, job: _Job) -> None:
        with self._lock:
            self._jobs.put(job)
            if self._idle > 0:
                self._idle -= 1
                return
        thread = threading.Thread(target=self._work, name="recall-dl file I/O", daemon=True)
        thread.start()

    def _work(self) -> None:
        jobs = self._jobs
        while True:
            try:
                loop, future, func, args = jobs.get(timeout=IDLE_SECONDS)
            except queue.Empty:
                with self._lock:
                    if jobs.empty():
                        self._idle -= 1
                        return
                continue
            result: Any = None
            error: BaseException | None = None
            try:
                result = func(*args)
            except BaseException as exc:  # delivered to the waiting coroutine
                error = exc
            del func, args  # drop the batch before idling: memory stays bounded
            # count ourselves idle before waking the caller, whose next call is then ours
            # (not a new thread's)
            with self._lock:
                self._idle += 1
            with contextlib.suppress(RuntimeError):  # a closed loop: nobody waits any more
                loop.call_soon_threadsafe(_settle, future, result, error)
            del loop, future, result, error


_POOL = _Pool()


def start(func: Callable[..., T], *args: Any) -> asyncio.Future[T]:
    """Run ``func(*args)`` in a worker thread; await the result later with ``wait``."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future[T] = loop.create_future()
    _POOL.submit((loop, future, func, args))
    return future


async def wait(future: asyncio.Future[T]) -> T:
    """The result of a ``start``ed call, once its thread is done (not cancellable)."""
    if future.done():  # the pipelined case: no cancel scope, no suspension
        return future.result()
    with anyio.CancelScope(shield=True):
        result = await future
    return result


async def run_sync(func: Callable[..., T], *args: Any) -> T:
    return await wait(start(func, *args))
