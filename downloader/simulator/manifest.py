"""The manifest host: ``GET /api/v1/download/video_separate?token=…`` → the parts JSON.

Like Recall's ``/api/v1/download/...?token=`` links it needs no Authorization header; one
sent anyway is answered but recorded, because it leaks the API key to a link-shaped URL.
"""

from __future__ import annotations

import time

from aiohttp import web

from .render import MANIFEST_PATH
from .state import SimState


def build_manifest_app(state: SimState) -> web.Application:
    async def manifest(request: web.Request) -> web.Response:
        response = _serve(state, request)
        state.stats.log(
            {
                "t": time.monotonic(),
                "host": "manifest",
                "method": request.method,
                "path": request.path,
                "has_auth": "Authorization" in request.headers,
                "status": response.status,
            }
        )
        return response

    app = web.Application()
    app.router.add_get(MANIFEST_PATH, manifest, name="manifest")
    return app


def _serve(state: SimState, request: web.Request) -> web.Response:
    state.stats.requests["manifest"] += 1
    if "Authorization" in request.headers:
        state.stats.violations["auth_to_manifest"] += 1
    if state.faults.fire("manifest_5xx"):
        return web.Response(status=503, text="503 simulated upstream error")
    now = state.clock.now_us()
    vs_id, expired = state.signer.check_manifest(request.query.get("token", ""), now)
    if vs_id is None:
        return web.json_response({"detail": "Invalid token."}, status=403)
    if expired:
        return web.json_response({"detail": "Token expired."}, status=403)
    rec = state.world.video_separate_by_id(vs_id)
    if rec is None or rec.vs_status(now)[0] != "done":
        return web.json_response({"detail": "Not found."}, status=404)
    return web.json_response(state.renderer.manifest(rec, now))
