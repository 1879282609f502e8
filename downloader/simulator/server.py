"""``Simulator``: the three listeners (API, manifest, media) around one shared state, plus a
fourth "other host" listener that only a client following a cross-host redirect ever reaches.

``SimulatorThread`` runs the same thing on its own event loop in a background thread, for
synchronous tests that drive the ``recall-dl`` CLI as a subprocess.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import hashlib
import threading
from collections.abc import Callable, Coroutine
from types import TracebackType
from typing import Any, Self, TypeVar

from aiohttp import web

from .api import build_api_app
from .config import BotSpec, FaultConfig, SimulatorConfig
from .manifest import build_manifest_app
from .media import MediaHost
from .state import SimState
from .webhooks import WebhookSender

T = TypeVar("T")


class ListenError(OSError):
    """A listener could not bind (the port is taken, the address is not ours, ...)."""

    def __init__(self, host: str, port: int, cause: OSError) -> None:
        super().__init__(cause.errno, cause.strerror or str(cause))
        self.host, self.port = host, port

    @property
    def in_use(self) -> bool:
        return self.errno == errno.EADDRINUSE


SHUTDOWN_TIMEOUT = 0.5  # stalled media responses must not hold a test's teardown hostage
REDIRECT_HOST = "127.0.0.2"  # another loopback address: a different origin for redirects


class Simulator:
    """A fake Recall workspace on real sockets; use as ``async with Simulator(cfg) as sim``."""

    def __init__(self, config: SimulatorConfig | None = None) -> None:
        self.config = config or SimulatorConfig()
        self.state = SimState(self.config)
        self._runners: list[web.AppRunner] = []
        self._tasks: list[asyncio.Task[None]] = []
        self._arrived = asyncio.Condition()
        self.webhooks = WebhookSender(self.state)

    # ---- lifecycle --------------------------------------------------------------------------

    async def start(self) -> None:
        cfg, hosts = self.config, self.state.hosts
        media = MediaHost(self.state, redirect_target=False)
        other = MediaHost(self.state, redirect_target=True)
        hosts.api = await self._listen(build_api_app(self.state), cfg.host, cfg.api_port)
        hosts.manifest = await self._listen(
            build_manifest_app(self.state), cfg.host, cfg.manifest_port
        )
        hosts.media = await self._listen(media.app(), cfg.host, cfg.media_port)
        try:
            media.redirect_base = await self._listen(other.app(), REDIRECT_HOST, 0)
        except OSError:  # no 127.0.0.2 here (e.g. macOS): another port is another origin too
            media.redirect_base = await self._listen(other.app(), cfg.host, 0)
        if cfg.arrival_interval_seconds:
            self._tasks.append(asyncio.create_task(self._arrivals(cfg.arrival_interval_seconds)))
        if cfg.webhook_url and cfg.webhook_secret:
            await self.webhooks.start()

    async def _listen(self, app: web.Application, host: str, port: int) -> str:
        runner = web.AppRunner(
            app, access_log=None, handle_signals=False, shutdown_timeout=SHUTDOWN_TIMEOUT
        )
        await runner.setup()
        self._runners.append(runner)
        site = web.TCPSite(runner, host, port)
        try:
            await site.start()
        except OSError as exc:
            raise ListenError(host, port, exc) from exc
        bound_port = runner.addresses[-1][1]
        return f"http://{host}:{bound_port}"

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()
        await self.webhooks.stop()
        for runner in reversed(self._runners):
            await runner.cleanup()
        self._runners.clear()

    async def __aenter__(self) -> Self:
        try:
            await self.start()
        except BaseException:
            await self.stop()
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    async def _arrivals(self, interval: float) -> None:
        while True:
            await asyncio.sleep(interval)
            index = self.state.world.bot_count
            self.state.world.add_bot(self.state.world.ordinary_spec(index), ordinary=True)
            async with self._arrived:
                self._arrived.notify_all()

    async def wait_for_arrivals(self, count: int) -> None:
        """Return once ``count`` bots were added at run time (``arrival_interval_seconds``)."""
        async with self._arrived:
            await self._arrived.wait_for(lambda: len(self.state.world.added) >= count)

    # ---- the test-facing interface ----------------------------------------------------------

    @property
    def api_url(self) -> str:
        return self.state.hosts.api

    @property
    def manifest_url(self) -> str:
        return self.state.hosts.manifest

    @property
    def media_url(self) -> str:
        return self.state.hosts.media

    @property
    def api_key(self) -> str:
        return self.config.api_key

    @property
    def bot_ids(self) -> list[str]:
        """The generated (ordinary) bots, including any that arrived while running; bots built
        with ``add_bot`` are not listed (their ids are returned by ``add_bot``)."""
        world = self.state.world
        return [*world.ordinary_ids, *(b.id for b in world.added if b.ordinary)]

    def add_bot(self, spec: BotSpec) -> str:
        return self.state.world.add_bot(spec).id

    def stats(self) -> dict[str, Any]:
        return self.state.stats.snapshot(self.state.faults.injected)

    def reset_stats(self) -> None:
        self.state.stats.reset()
        self.state.faults.injected.clear()

    def set_faults(self, faults: FaultConfig) -> None:
        self.state.faults.set(faults)

    def advance_time(self, seconds: float) -> None:
        """Move the simulated clock forward: lifecycles progress and URLs expire, no sleeping."""
        self.state.clock.advance(seconds)

    def recording_ids(self, bot_id: str) -> list[str]:
        world = self.state.world
        bot = world.bot_by_id(bot_id)
        if bot is None:
            raise KeyError(bot_id)
        return [r.id for r in world.recordings(bot)]

    def video_separate_id(self, recording_id: str) -> str:
        rec = self.state.world.recording_by_id_any_time(recording_id)
        if rec is None:
            raise KeyError(recording_id)
        return rec.video_separate_id

    def parts(self, recording_id: str) -> list[dict[str, Any]]:
        """The manifest entries of a recording (with freshly signed URLs)."""
        state = self.state
        rec = state.world.recording_by_id_any_time(recording_id)
        if rec is None:
            raise KeyError(recording_id)
        return state.renderer.manifest(rec, state.clock.now_us())

    def part_content(self, part_id: str) -> bytes:
        part = self.state.world.part_by_id(part_id)
        if part is None:
            raise KeyError(part_id)
        obj = self.state.world.media_object(part)
        return obj.read(0, obj.size)

    def part_sha256(self, part_id: str) -> str:
        return hashlib.sha256(self.part_content(part_id)).hexdigest()

    def request_log(self) -> list[dict[str, Any]]:
        return list(self.state.stats.request_log)


class SimulatorThread:
    """``Simulator`` on a private event loop in a daemon thread; every call is marshalled to it."""

    def __init__(
        self, config: SimulatorConfig | None = None, *, start_timeout: float = 30.0
    ) -> None:
        self.config = config or SimulatorConfig()
        self._timeout = start_timeout
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="recall-sim", daemon=True
        )
        self._sim: Simulator | None = None

    def __enter__(self) -> Self:
        self._thread.start()
        try:
            self._sim = self._run(self._start())
        except BaseException:
            self._shutdown_loop()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            if self._sim is not None:
                self._run(self._sim.stop())
        finally:
            self._shutdown_loop()

    async def _start(self) -> Simulator:
        sim = Simulator(self.config)
        await sim.__aenter__()
        return sim

    def _shutdown_loop(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(self._timeout)
        self._loop.close()

    def _run(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(self._timeout)

    def _call(self, fn: Callable[[Simulator], T]) -> T:
        async def call() -> T:
            return fn(self.sim)

        return self._run(call())

    @property
    def sim(self) -> Simulator:
        if self._sim is None:
            raise RuntimeError("SimulatorThread is not running; use it as a context manager")
        return self._sim

    @property
    def api_url(self) -> str:
        return self.sim.api_url

    @property
    def manifest_url(self) -> str:
        return self.sim.manifest_url

    @property
    def media_url(self) -> str:
        return self.sim.media_url

    @property
    def api_key(self) -> str:
        return self.sim.api_key

    @property
    def bot_ids(self) -> list[str]:
        return self._call(lambda s: s.bot_ids)

    def add_bot(self, spec: BotSpec) -> str:
        return self._call(lambda s: s.add_bot(spec))

    def stats(self) -> dict[str, Any]:
        return self._call(lambda s: s.stats())

    def reset_stats(self) -> None:
        self._call(lambda s: s.reset_stats())

    def set_faults(self, faults: FaultConfig) -> None:
        self._call(lambda s: s.set_faults(faults))

    def advance_time(self, seconds: float) -> None:
        self._call(lambda s: s.advance_time(seconds))

    def recording_ids(self, bot_id: str) -> list[str]:
        return self._call(lambda s: s.recording_ids(bot_id))

    def video_separate_id(self, recording_id: str) -> str:
        return self._call(lambda s: s.video_separate_id(recording_id))

    def parts(self, recording_id: str) -> list[dict[str, Any]]:
        return self._call(lambda s: s.parts(recording_id))

    def part_content(self, part_id: str) -> bytes:
        return self._call(lambda s: s.part_content(part_id))

    def part_sha256(self, part_id: str) -> str:
        return self._call(lambda s: s.part_sha256(part_id))

    def request_log(self) -> list[dict[str, Any]]:
        return self._call(lambda s: s.request_log())
