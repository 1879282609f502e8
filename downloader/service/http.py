"""The service's HTTP listener: health, readiness, metrics and the Recall webhook receiver.

=====================  ===================================================================
``GET /healthz``       200 while the event loop answers (it runs this handler)
``GET /readyz``        200 when the store answers and the service is not draining, else 503
``GET /metrics``       Prometheus text format (prometheus-client's aiohttp handler)
``POST /webhooks/recall``  verify, queue durably, then 2xx (see ``service.webhooks``)
=====================  ===================================================================

The webhook handler answers 2xx only after the store committed the jobs; a store failure is
a 503, so Svix delivers again later. Bodies are capped (Recall's events are small).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass

import anyio
import structlog
from aiohttp import web
from prometheus_client.aiohttp import make_aiohttp_handler

from downloader.errors import ConfigError, RecallDlError
from downloader.service.metrics import ServiceMetrics
from downloader.service.webhooks import Outcome, Rejected, Verifier, accept
from downloader.store.protocol import JobStore

log = structlog.get_logger(__name__)

MAX_WEBHOOK_BYTES = 1 << 20
READY_CHECK_SECONDS = 2.0
WEBHOOK_PATH = "/webhooks/recall"


@dataclass
class Endpoints:
    """What the handlers need; ``draining`` and ``verifier`` change while the service runs."""

    store: JobStore
    metrics: ServiceMetrics
    verifier: Verifier | None  # None: webhooks are switched off
    on_enqueued: Callable[[], None]
    draining: bool = False


ENDPOINTS = web.AppKey("endpoints", Endpoints)


def _json(code: int, **fields: object) -> web.Response:
    return web.Response(
        status=code, text=json.dumps(fields) + "\n", content_type="application/json"
    )


async def healthz(_request: web.Request) -> web.Response:
    return _json(200, status="ok")


async def readyz(request: web.Request) -> web.Response:
    endpoints = request.app[ENDPOINTS]
    if endpoints.draining:
        return _json(503, status="draining")
    try:
        with anyio.fail_after(READY_CHECK_SECONDS):
            await endpoints.store.get_cursor("sweep_since")
    except (TimeoutError, RecallDlError, OSError) as exc:
        log.warning("readyz_store_unreachable", error=type(exc).__name__)
        return _json(503, status="store unreachable")
    return _json(200, status="ready")


async def recall_webhook(request: web.Request) -> web.Response:
    endpoints = request.app[ENDPOINTS]
    if endpoints.verifier is None:
        return _json(404, error="webhooks are switched off")
    body = await request.read()
    try:
        verified = endpoints.verifier.verify(body, request.headers)
        outcome = await accept(endpoints.store, verified)
    except Rejected as rejected:
        endpoints.metrics.webhook_deliveries.labels(rejected.outcome.value).inc()
        log.warning("webhook_rejected", status=rejected.status, why=rejected.reason)
        return _json(rejected.status, error=rejected.reason)
    except RecallDlError as exc:
        endpoints.metrics.webhook_deliveries.labels(Outcome.ERROR.value).inc()
        log.error("webhook_store_failed", error=exc.reason)
        return _json(503, error="could not queue the work; deliver again later")
    endpoints.metrics.webhook_deliveries.labels(outcome.value).inc()
    log.info("webhook_received", webhook_event=verified.event, outcome=outcome.value)
    if outcome is Outcome.ENQUEUED:
        endpoints.on_enqueued()
    if outcome is Outcome.IGNORED:
        return web.Response(status=204)
    return _json(200, outcome=outcome.value)


def build_app(endpoints: Endpoints) -> web.Application:
    app = web.Application(client_max_size=MAX_WEBHOOK_BYTES)
    app[ENDPOINTS] = endpoints
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", make_aiohttp_handler(endpoints.metrics.registry))
    app.router.add_post(WEBHOOK_PATH, recall_webhook)
    return app


def parse_listen(listen: str) -> tuple[str, int]:
    host, _, port = listen.rpartition(":")
    return host.strip("[]"), int(port)


@asynccontextmanager
async def serve(endpoints: Endpoints, listen: str) -> AsyncIterator[list[str]]:
    """Listen on ``HOST:PORT`` until the block ends; yields the bound addresses."""
    host, port = parse_listen(listen)
    runner = web.AppRunner(
        build_app(endpoints), access_log=None, handle_signals=False, shutdown_timeout=2.0
    )
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port)
        try:
            await site.start()
        except OSError as exc:
            raise ConfigError(f"cannot listen on {listen}: {exc.strerror}") from None
        yield [f"{a[0]}:{a[1]}" for a in runner.addresses if isinstance(a, tuple)]
    finally:
        with anyio.CancelScope(shield=True):
            await runner.cleanup()
