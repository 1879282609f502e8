"""Keep a job's lease alive while long work runs under it."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TypeVar

import anyio
import structlog

from downloader.store.protocol import JobStore, Lease, LeaseLost

log = structlog.get_logger(__name__)
T = TypeVar("T")


async def _renew(store: JobStore, lease: Lease, seconds: float, scope: anyio.CancelScope) -> None:
    while True:
        # A third of the lease: two renewals can fail (a slow commit) before it expires.
        await anyio.sleep(seconds / 3)
        if not await store.heartbeat(lease, seconds):
            log.warning("lease_lost", job_id=lease.job.id)
            scope.cancel()
            return


async def with_heartbeat(
    store: JobStore, lease: Lease, seconds: float, work: Callable[[], Awaitable[T]]
) -> T:
    """Run ``work`` while renewing the lease; raise LeaseLost if the lease is lost meanwhile.

    Errors from ``work`` propagate unchanged (not wrapped in an ExceptionGroup), so callers
    branch on the error tree as usual.
    """
    box: dict[str, object] = {}
    async with anyio.create_task_group() as group:
        group.start_soon(_renew, store, lease, seconds, group.cancel_scope)
        try:
            box["result"] = await work()
        except Exception as exc:  # re-raised below, outside the task group
            box["error"] = exc
        group.cancel_scope.cancel()
    if "error" in box:
        raise box["error"]  # type: ignore[misc]
    if "result" not in box:
        raise LeaseLost(f"lease on {lease.job.id} was lost while working")
    return box["result"]  # type: ignore[return-value]
