"""``recall-dl run``: the composition root of the long-running service.

Phases, as in uvicorn's ``Server``: :meth:`Service.run` = startup → main loop → shutdown.

* **startup** — check the settings, open the store, the pipeline (API and media sessions)
  and the HTTP listener; then ``READY=1``. Signals are received from the very start.
* **main loop** — one task group: the worker pools (poll, API, transfer), the lease keeper,
  the sweep, the status/metrics refresher and the watchdog. A side task that raises or
  returns stops the service (logged as ``service_task_died``); systemd restarts it.
* **shutdown** — first SIGTERM/SIGINT: ``STOPPING=1``, ``/readyz`` says draining, workers
  stop claiming and finish the job in hand within ``grace_period_seconds``. Then (or at a
  second signal) the rest is cancelled: a transfer writes its buffered bytes and checkpoint,
  and each job's lease is released, all in shielded scopes. If that cleanup outlives
  ``hard_deadline_seconds`` the process exits anyway (status 1) and the leases expire.
* **SIGHUP** — re-read the settings; apply what is safe live (:data:`RELOADABLE`), log what
  needs a restart; an invalid file leaves the running settings untouched.
"""

from __future__ import annotations

import dataclasses
import os
import signal
import threading
import time
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from typing import Any

import anyio
import structlog
from anyio.abc import TaskGroup, TaskStatus

from downloader import lifecycle
from downloader.app import open_pipeline, open_store_for, prepare_out_dir
from downloader.config import Settings
from downloader.errors import ConfigError, RecallDlError
from downloader.lifecycle import JobKind, JobState
from downloader.logs import configure_logging
from downloader.pipeline import PipelineContext, lease_keeper
from downloader.service.http import Endpoints, serve
from downloader.service.metrics import ServiceMetrics
from downloader.service.pools import WorkerPool
from downloader.service.sdnotify import Notifier, watchdog_interval
from downloader.service.sweep import Discover, SweepRound, release_lease, sweep_loop
from downloader.service.webhooks import Verifier
from downloader.transfer import TransferLimits

log = structlog.get_logger(__name__)

STATUS_INTERVAL_SECONDS = 5.0
EXIT_OK = 0
EXIT_FAILED = 1
# Settings applied by SIGHUP while running; every other change waits for a restart.
RELOADABLE = frozenset(
    {
        "concurrency",
        "api_concurrency",
        "poll_concurrency",
        "per_host_concurrency",
        "per_recording_concurrency",
        "log_level",
        "sweep_interval_seconds",
        "sweep_overlap_seconds",
        "poll_initial_seconds",
        "poll_max_seconds",
        "max_attempts",
        "grace_period_seconds",
        "hard_deadline_seconds",
    }
)
POLL_KINDS = frozenset({JobKind.POLL_BOT})
API_KINDS = lifecycle.API_KINDS - POLL_KINDS


class ServiceTaskDied(RecallDlError):
    """A task the service cannot run without stopped; the process exits for a restart."""


def check_service_settings(settings: Settings) -> Verifier | None:
    """Refuse settings the service cannot run with; returns the webhook verifier (if on)."""
    settings.require_api_key()
    if not settings.webhooks_enabled:
        return None
    if settings.webhook_secret is None:
        # The sweep still finds everything; the receiver stays off rather than the service.
        log.warning(
            "webhooks_off_no_secret",
            hint="no webhook secret is configured: set RECALL_WEBHOOK_SECRET, "
            "webhook_secret_file, or a systemd credential named recall_webhook_secret "
            "(unsigned webhooks are never accepted); set webhooks_enabled = false to "
            "silence this",
        )
        return None
    return Verifier(settings.webhook_secret)


def default_discover() -> Discover:
    from downloader.discovery import discover  # imported late: it pulls in the pipeline

    return discover


def describe_queue(counts: dict[tuple[JobKind, JobState], int]) -> str:
    per_state = dict.fromkeys(JobState, 0)
    for (_kind, state), n in counts.items():
        per_state[state] += n
    parts_pending = counts.get((JobKind.DOWNLOAD_PART, JobState.PENDING), 0)
    parts_running = counts.get((JobKind.DOWNLOAD_PART, JobState.RUNNING), 0)
    return (
        f"queue: {per_state[JobState.PENDING]} pending, {per_state[JobState.RUNNING]} running, "
        f"{per_state[JobState.DONE]} done, {per_state[JobState.FAILED]} failed; "
        f"parts: {parts_pending} waiting, {parts_running} downloading"
    )


class Service:
    """One running ``recall-dl run``. ``await Service(...).run()`` returns the exit status."""

    def __init__(
        self,
        settings: Settings,
        *,
        state: str,
        reload_settings: Callable[[], Settings],
        notifier: Notifier | None = None,
        discover: Discover | None = None,
    ) -> None:
        self.settings = settings
        self.state = state
        self.verifier = check_service_settings(settings)
        self._reload_settings = reload_settings
        self.notifier = notifier or Notifier.from_env()
        self._discover = discover
        if settings.sweep_enabled and discover is None:
            self._discover = default_discover()
        self.metrics = ServiceMetrics()
        # anyio primitives need a running event loop: made at the start of run().
        self.stop_requested: anyio.Event
        self.settings_changed: anyio.Event
        self.pools_done: anyio.Event
        self._pools_scope: anyio.CancelScope
        self._workers: TaskGroup | None = None
        self._pools: list[WorkerPool] = []
        self._endpoints: Endpoints | None = None
        self._ctx: PipelineContext | None = None
        self._forced = False
        self._draining = False
        self._deadline: threading.Timer | None = None
        self.addresses: list[str] = []

    # -- phases ---------------------------------------------------------------------------

    async def run(self) -> int:
        self.stop_requested = anyio.Event()
        self.settings_changed = anyio.Event()
        self.pools_done = anyio.Event()
        self._pools_scope = anyio.CancelScope()
        try:
            async with anyio.create_task_group() as root:
                await root.start(self._signals, name="signals")
                async with AsyncExitStack() as stack:
                    ctx = await self._startup(stack)
                    await self._main_loop(ctx)
                root.cancel_scope.cancel()
        finally:
            if not self._draining:
                self.notifier.stopping("stopping after an error")
            if self._deadline is not None:
                self._deadline.cancel()
            self.notifier.close()
        log.info("service_stopped", forced=self._forced)
        return EXIT_OK

    async def _startup(self, stack: AsyncExitStack) -> PipelineContext:
        settings = self.settings
        out = prepare_out_dir(settings.out)
        store = await stack.enter_async_context(open_store_for(settings, self.state))
        ctx = await stack.enter_async_context(open_pipeline(settings, store, out))
        self._ctx = ctx
        self.metrics.bind(ctx)
        self._endpoints = Endpoints(
            store=store,
            metrics=self.metrics,
            verifier=self.verifier,
            on_enqueued=ctx.wake_workers,
        )
        self.addresses = await stack.enter_async_context(
            serve(self._endpoints, settings.http_listen)
        )
        stack.push_async_callback(self._shielded, self._release_sweep)
        status = await self._refresh_status(ctx)
        self.notifier.ready(status)
        log.info(
            "service_ready",
            listen=self.addresses,
            state=self.state,
            out=str(out),
            webhooks=self.verifier is not None,
            sweep=self._discover is not None,
            worker=ctx.worker,
        )
        return ctx

    async def _main_loop(self, ctx: PipelineContext) -> None:
        async with anyio.create_task_group() as group:
            group.start_soon(self._run_pools, ctx, name="pools")
            self._critical(group, "lease_keeper", lambda: lease_keeper(ctx))
            self._critical(group, "status", lambda: self._status_loop(ctx))
            interval = watchdog_interval()
            if interval is not None:
                self._critical(group, "watchdog", lambda: self._watchdog(interval))
            if self._discover is not None:
                self._critical(group, "sweep", lambda: self._sweep(ctx))
            if self.stop_requested.is_set() is False:
                await self.stop_requested.wait()
            await self._drain()
            group.cancel_scope.cancel()

    async def _drain(self) -> None:
        self._draining = True
        assert self._endpoints is not None
        self._endpoints.draining = True
        self.metrics.draining.set(1)
        grace = self.settings.grace_period_seconds
        self.notifier.stopping(f"draining: finishing jobs in hand (up to {grace:.0f} s)")
        log.info("service_draining", grace_seconds=grace)
        for pool in self._pools:
            pool.stop()
        with anyio.move_on_after(grace):
            await self.pools_done.wait()
        if not self.pools_done.is_set():
            self._force("grace period over")
        await self.pools_done.wait()

    def _force(self, why: str) -> None:
        """Cancel the jobs in hand; their shielded cleanup gets ``hard_deadline_seconds``."""
        if self._forced:
            return
        self._forced = True
        deadline = self.settings.hard_deadline_seconds
        log.warning("service_cancelling_jobs", why=why, hard_deadline_seconds=deadline)
        self.notifier.status(f"stopping: cancelling jobs in hand ({why})")
        self._deadline = threading.Timer(deadline, _hard_exit, args=(deadline,))
        self._deadline.daemon = True
        self._deadline.start()
        self._pools_scope.cancel()

    # -- tasks ----------------------------------------------------------------------------

    def _critical(self, group: TaskGroup, name: str, fn: Callable[[], Awaitable[Any]]) -> None:
        async def guarded() -> None:
            try:
                await fn()
            except anyio.get_cancelled_exc_class():
                raise
            except Exception as exc:
                log.critical("service_task_died", task=name, error=repr(exc), exc_info=True)
                self.notifier.status(f"failed: task {name} died: {type(exc).__name__}")
                raise
            log.critical("service_task_died", task=name, error="returned")
            raise ServiceTaskDied(f"service task {name} stopped unexpectedly")

        group.start_soon(guarded, name=name)

    async def _run_pools(self, ctx: PipelineContext) -> None:
        try:
            with self._pools_scope:
                async with anyio.create_task_group() as workers:
                    self._pools = [
                        WorkerPool("poll", ctx, POLL_KINDS),
                        WorkerPool("api", ctx, API_KINDS),
                        WorkerPool("transfer", ctx, lifecycle.TRANSFER_KINDS),
                    ]
                    self._workers = workers
                    self._size_pools()
                    if self._draining:
                        for pool in self._pools:
                            pool.stop()
        finally:
            self.pools_done.set()
        if not self._draining:
            log.critical("service_task_died", task="pools", error="returned")
            raise ServiceTaskDied("the worker pools stopped unexpectedly")

    def _size_pools(self) -> None:
        if self._draining or not self._pools or self._workers is None:
            return
        poll, api, transfer = self._pools
        poll.resize(self._workers, self.settings.poll_concurrency)
        api.resize(self._workers, self.settings.api_concurrency)
        transfer.resize(self._workers, self.settings.concurrency)
        for pool in self._pools:
            self.metrics.workers.labels(pool.name).set(pool.size)

    async def _signals(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT, signal.SIGHUP) as signals:
            task_status.started()
            async for signum in signals:
                if signum == signal.SIGHUP:
                    await self.reload()
                elif not self.stop_requested.is_set():
                    log.info("service_stop_requested", signal=signal.Signals(signum).name)
                    self.stop_requested.set()
                else:
                    log.warning("service_stop_forced", signal=signal.Signals(signum).name)
                    self._force(f"second {signal.Signals(signum).name}")

    async def _watchdog(self, interval: float) -> None:
        # Pinged from the event loop itself: a blocked loop stops the pings, and systemd
        # restarts a service that is alive but no longer doing anything.
        while True:
            self.notifier.watchdog()
            await anyio.sleep(interval)

    async def _status_loop(self, ctx: PipelineContext) -> None:
        while True:
            await anyio.sleep(STATUS_INTERVAL_SECONDS)
            try:
                status = await self._refresh_status(ctx)
            except RecallDlError as exc:
                log.warning("status_refresh_failed", error=exc.reason)
                continue
            if self._draining:
                status = f"draining; {status}"
            self.notifier.status(status)

    async def _refresh_status(self, ctx: PipelineContext) -> str:
        counts = await ctx.store.counts()
        self.metrics.set_queue(counts)
        now = ctx.clock()
        ages: dict[JobKind, float] = {}
        for kind in JobKind:
            if counts.get((kind, JobState.PENDING), 0):
                oldest = await ctx.store.list_jobs(kind=kind, state=JobState.PENDING, limit=1)
                if oldest:
                    ages[kind] = max(0.0, now - oldest[0].created_at)
        self.metrics.set_oldest(ages)
        return describe_queue(counts)

    async def _sweep(self, ctx: PipelineContext) -> None:
        assert self._discover is not None

        def record(done: SweepRound | None, error: BaseException | None) -> None:
            if error is not None:
                self.metrics.sweeps.labels("error").inc()
            elif done is None:
                self.metrics.sweeps.labels("skipped").inc()
            else:
                self.metrics.sweeps.labels("ok").inc()
                self.metrics.sweep_enqueued.inc(done.enqueued)

        await sweep_loop(
            ctx,
            self._discover,
            interval=lambda: self.settings.sweep_interval_seconds,
            overlap=lambda: self.settings.sweep_overlap_seconds,
            wake=lambda: self.settings_changed,
            on_round=record,
        )

    async def _release_sweep(self) -> None:
        if self._ctx is not None and self._discover is not None:
            try:
                await release_lease(self._ctx)
            except RecallDlError as exc:
                log.warning("sweep_lease_release_failed", error=exc.reason)

    @staticmethod
    async def _shielded(fn: Callable[[], Awaitable[None]]) -> None:
        with anyio.CancelScope(shield=True):
            await fn()

    # -- SIGHUP -----------------------------------------------------------------------------

    async def reload(self) -> bool:
        """Re-read the settings and apply the safe part; False (and no change) if invalid."""
        self.notifier.reloading()
        try:
            new = await anyio.to_thread.run_sync(self._reload_settings)
            check_service_settings(new)
        except ConfigError as exc:
            log.error("config_reload_rejected", error=exc.reason, kept="running settings")
            self.metrics.reloads.labels("rejected").inc()
            self.notifier.ready(f"reload rejected, old settings kept: {exc.reason}")
            return False
        changes = {
            f.name: getattr(new, f.name)
            for f in dataclasses.fields(Settings)
            if getattr(new, f.name) != getattr(self.settings, f.name)
        }
        applied = {k: v for k, v in changes.items() if k in RELOADABLE}
        later = sorted(k for k in changes if k not in RELOADABLE)
        self._apply(applied)
        pool = _connection_limit(self._ctx)
        if pool and new.concurrency > pool:
            # The media session's connection pool was sized at start (aiohttp cannot resize
            # it): more workers than connections wait for one.
            log.warning(
                "concurrency_above_connection_pool",
                concurrency=new.concurrency,
                connections=pool,
                fix="restart to enlarge the pool",
            )
        if later:
            log.warning("config_reload_needs_restart", settings=later)
        log.info("config_reloaded", applied=sorted(applied))
        self.metrics.reloads.labels("applied").inc()
        self.notifier.ready(f"reloaded: applied {', '.join(sorted(applied)) or 'nothing'}")
        return True

    def _apply(self, changes: dict[str, Any]) -> None:
        if not changes:
            return
        self.settings = dataclasses.replace(self.settings, **changes)
        if "log_level" in changes:
            configure_logging(
                self.settings.log_level,
                self.settings.log_format,
                secrets=[
                    s.reveal() for s in (self.settings.api_key, self.settings.webhook_secret) if s
                ],
            )
        ctx = self._ctx
        if ctx is not None:
            ctx.settings = dataclasses.replace(ctx.settings, **changes)
            if changes.keys() & {
                "concurrency",
                "per_host_concurrency",
                "per_recording_concurrency",
            }:
                ctx.limits = TransferLimits(
                    global_limit=self.settings.concurrency,
                    per_host=self.settings.per_host_concurrency,
                    per_recording=self.settings.per_recording_concurrency,
                )
        self._size_pools()
        changed, self.settings_changed = self.settings_changed, anyio.Event()
        changed.set()


def _connection_limit(ctx: PipelineContext | None) -> int:
    connector = ctx.media.connector if ctx is not None else None
    return connector.limit if connector is not None else 0


def _hard_exit(deadline: float) -> None:
    """Runs on a timer thread: cleanup outlived the hard deadline; leases will expire."""
    log.critical("service_hard_deadline", seconds=deadline)
    time.sleep(0.05)  # let the log line reach the journal
    os._exit(EXIT_FAILED)
