"""Worker pools over the job store: claim, run the handler, record the outcome.

Every job outcome goes through :func:`run_job`, the one place that turns handler results
and the error tree into store operations. Workers never sleep while holding a job: waiting
is a reschedule.
"""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable, Collection

import anyio
import structlog

from downloader import lifecycle
from downloader.errors import (
    DiskFull,
    JobFailed,
    RecallDlError,
    RefreshUrl,
    RetryLater,
    StopService,
)
from downloader.lifecycle import JobKind
from downloader.pipeline.bots import poll_bot
from downloader.pipeline.context import PipelineContext
from downloader.pipeline.deadholders import dead_local_holders, pid_alive
from downloader.pipeline.finalize import finalize_recording
from downloader.pipeline.leases import with_heartbeat
from downloader.pipeline.manifests import fetch_manifest
from downloader.pipeline.outcome import Finish, Outcome, Wait
from downloader.pipeline.parts import download_part
from downloader.pipeline.recordings import resolve_recording
from downloader.store.protocol import IllegalTransition, Lease, LeaseLost

log = structlog.get_logger(__name__)

Handler = Callable[[PipelineContext, Lease], Awaitable[Outcome]]
HANDLERS: dict[JobKind, Handler] = {
    JobKind.POLL_BOT: poll_bot,
    JobKind.RESOLVE_RECORDING: resolve_recording,
    JobKind.FETCH_MANIFEST: fetch_manifest,
    JobKind.DOWNLOAD_PART: download_part,
    JobKind.FINALIZE_RECORDING: finalize_recording,
}
IDLE_POLL_SECONDS = 0.5
DISK_FULL_FIRST_WAIT = 2.0
DISK_FULL_MAX_WAIT = 60.0


async def _record_outcome(ctx: PipelineContext, lease: Lease, outcome: Outcome) -> None:
    if isinstance(outcome, Finish):
        await ctx.store.finish(lease, outcome.result)
        ctx.count(f"{lease.job.kind.value}_done")
        if outcome.then is not None:
            await outcome.then()
    elif isinstance(outcome, Wait):
        await ctx.store.reschedule(lease, ctx.clock() + outcome.delay, payload=outcome.payload)
        log.debug("job_waiting", reason=outcome.reason, delay=round(outcome.delay, 1))


async def _record_retry(
    ctx: PipelineContext, lease: Lease, exc: RecallDlError, hint: float | None
) -> None:
    attempts = lease.job.attempts + 1
    if lifecycle.attempts_exhausted(attempts, ctx.settings.max_attempts):
        reason = f"gave up after {attempts} attempts: {exc.reason}"
        await ctx.store.fail(lease, reason)
        ctx.count(f"{lease.job.kind.value}_failed")
        log.error("job_failed", reason=reason)
        return
    delay = lifecycle.retry_delay(attempts, hint)
    await ctx.store.retry_later(lease, ctx.clock() + delay, exc.reason)
    ctx.count(f"{lease.job.kind.value}_retried")
    log.warning("job_retry", error=exc.reason, attempt=attempts, delay=round(delay, 1))


async def _run_handler(ctx: PipelineContext, lease: Lease) -> Outcome:
    handler = HANDLERS[lease.job.kind]
    if lease.job.kind in lifecycle.TRANSFER_KINDS:
        return await handler(ctx, lease)  # renews its lease itself, around the transfer only
    # API tasks can wait a long time for a rate slot or a 429 pause: keep the lease alive
    # meanwhile, or another host would run the job again and an attempt would be counted.
    return await with_heartbeat(
        ctx.store, lease, ctx.settings.lease_seconds, lambda: handler(ctx, lease)
    )


async def _wait_for_disk_space(ctx: PipelineContext, lease: Lease, exc: DiskFull) -> None:
    """Not the part's fault and not for good: wait for space without spending attempts
    (the partial file is kept), checking again sooner at first, then every minute."""
    waits = int(lease.job.payload.get("disk_full_waits") or 0)
    delay = lifecycle.poll_delay(waits, initial=DISK_FULL_FIRST_WAIT, maximum=DISK_FULL_MAX_WAIT)
    payload = {**lease.job.payload, "disk_full_waits": waits + 1}
    await ctx.store.reschedule(lease, ctx.clock() + delay, payload=payload)
    ctx.count("disk_full_waits")
    log.error("job_waiting_for_disk_space", error=exc.reason, retry_in=round(delay, 1))


async def _fail_poison(ctx: PipelineContext, lease: Lease) -> None:
    """A job whose holders kept dying (each reclaim counts an attempt) is not run again:
    if it is what kills them, running it once more would only repeat the crash."""
    job = lease.job
    reason = f"gave up after {job.attempts} attempts: {job.last_error or 'holder died'}"
    await ctx.store.fail(lease, reason)
    ctx.count(f"{job.kind.value}_failed")
    log.error("job_failed", reason=reason)


async def run_job(ctx: PipelineContext, lease: Lease) -> None:
    """Run one claimed job to a recorded outcome. StopService propagates (after release)."""
    structlog.contextvars.bind_contextvars(job_id=lease.job.id)
    try:
        if lifecycle.attempts_exhausted(lease.job.attempts, ctx.settings.max_attempts):
            await _fail_poison(ctx, lease)
            return
        try:
            outcome = await _run_handler(ctx, lease)
        except StopService:
            with anyio.CancelScope(shield=True):
                await ctx.store.release(lease)
            raise
        except DiskFull as exc:
            await _wait_for_disk_space(ctx, lease, exc)
        except (RetryLater, RefreshUrl) as exc:
            await _record_retry(ctx, lease, exc, getattr(exc, "retry_after", None))
        except JobFailed as exc:
            await ctx.store.fail(lease, exc.reason)
            ctx.count(f"{lease.job.kind.value}_failed")
            log.error("job_failed", reason=exc.reason)
        except LeaseLost:
            log.warning("job_abandoned_lease_lost")
        except Exception as exc:  # a bug: keep the service alive, count it as an attempt
            log.exception("job_crashed")
            await _record_retry(
                ctx, lease, RecallDlError(f"internal error: {type(exc).__name__}: {exc}"), None
            )
        else:
            await _record_outcome(ctx, lease, outcome)
    except anyio.get_cancelled_exc_class():
        # Shutdown: hand the job back so the next start (or another host) resumes it.
        # IllegalTransition: the outcome (e.g. finish) committed although its await was
        # cancelled; the job is already where it belongs.
        with anyio.CancelScope(shield=True):
            with contextlib.suppress(LeaseLost, IllegalTransition):
                await ctx.store.release(lease)
        raise
    except LeaseLost:
        log.warning("job_outcome_dropped_lease_lost")
    finally:
        structlog.contextvars.unbind_contextvars("job_id")


async def worker_loop(
    ctx: PipelineContext, kinds: Collection[JobKind], draining: anyio.Event
) -> None:
    """Claim and run jobs of ``kinds`` one at a time until draining starts."""
    while not draining.is_set():
        # Shielded: a store call cancelled while in flight may still commit, and a claim whose
        # leases never reach us would strand its jobs as RUNNING until the lease expires.
        # A pending cancellation then lands inside run_job, which releases the job.
        with anyio.CancelScope(shield=True):
            leases = await ctx.store.claim(
                ctx.worker, kinds=kinds, limit=1, lease_seconds=ctx.settings.lease_seconds
            )
        if not leases:
            wake = ctx.work_available
            with anyio.move_on_after(IDLE_POLL_SECONDS):
                await wake.wait()
            continue
        await run_job(ctx, leases[0])


async def lease_keeper(ctx: PipelineContext) -> None:
    """Return jobs of crashed workers (dead local processes, expired leases) to the queue."""
    while True:
        reclaimed = await reclaim_dead_local_holders(ctx)
        reclaimed += await ctx.store.reclaim_expired()
        if reclaimed:
            ctx.count("lease_reclaims", reclaimed)
            log.warning("leases_reclaimed", jobs=reclaimed)
            ctx.wake_workers()
        await anyio.sleep(max(1.0, ctx.settings.lease_seconds / 4))


async def reclaim_dead_local_holders(ctx: PipelineContext) -> int:
    """Hand on at once the jobs of processes on this host that no longer exist."""
    holders = [w.worker for w in await ctx.store.workers() if w.running_jobs]
    host = ctx.worker.rpartition(":")[0]
    reclaimed = 0
    for holder in dead_local_holders(holders, host=host, me=ctx.worker, alive=pid_alive):
        count = await ctx.store.reclaim_worker(holder)
        if count:
            log.warning("dead_holder_reclaimed", holder=holder, jobs=count)
        reclaimed += count
    return reclaimed


async def run_pools(
    ctx: PipelineContext,
    draining: anyio.Event,
    *,
    api_workers: int | None = None,
    transfer_workers: int | None = None,
) -> None:
    """Run the API and transfer worker pools until ``draining`` is set and they are idle."""
    api = api_workers or ctx.settings.api_concurrency
    transfer = transfer_workers or ctx.settings.concurrency
    async with anyio.create_task_group() as group:
        for _ in range(api):
            group.start_soon(worker_loop, ctx, lifecycle.API_KINDS, draining)
        for _ in range(transfer):
            group.start_soon(worker_loop, ctx, lifecycle.TRANSFER_KINDS, draining)
