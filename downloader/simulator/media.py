"""The S3-like media host: pre-signed GETs of MP4 parts, with Range, If-Range and faults.

Checks run in S3's order: a second auth mechanism (an Authorization header next to the
query-string signature) is a 400, a bad signature a 403, an expired URL the 403 "Request has
expired" body that tells a client to fetch a fresh URL rather than give up.
"""

from __future__ import annotations

import asyncio
import hashlib
import secrets
import time
from dataclasses import dataclass
from xml.sax.saxutils import escape

from aiohttp import web

from .clock import US, http_date, iso
from .mp4 import CHUNK_SIZE, Mp4Object
from .state import SimState
from .world import PartEntry

RANGE_UNSATISFIABLE = "unsatisfiable"
ONE_AUTH_MESSAGE = (
    "Only one auth mechanism allowed; only the X-Amz-Algorithm query parameter, Signature "
    "query string parameter or the Authorization header should be specified"
)


def parse_range(header: str | None, size: int) -> tuple[int, int] | str | None:
    """``[start, end)`` for a single satisfiable byte range, ``RANGE_UNSATISFIABLE``, or None
    when the header is absent, malformed or multi-range (S3 then sends the whole object)."""
    if header is None:
        return None
    unit, _, spec = header.strip().partition("=")
    if unit.strip().lower() != "bytes" or "," in spec:
        return None
    first, dash, last = spec.strip().partition("-")
    if not dash or not (first.isdigit() or last.isdigit()):
        return None
    if not first:  # suffix: the last N bytes
        n = int(last)
        return RANGE_UNSATISFIABLE if n == 0 else (max(0, size - n), size)
    start = int(first)
    if last and not last.isdigit():
        return None
    end = min(size, int(last) + 1) if last else size
    if last and int(last) < start:
        return None
    return RANGE_UNSATISFIABLE if start >= size else (start, end)


def s3_error(status: int, code: str, message: str, **fields: str) -> web.Response:
    extra = "".join(f"<{k}>{escape(v)}</{k}>" for k, v in fields.items())
    request_id = secrets.token_hex(8).upper()
    body = (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f"<Error><Code>{code}</Code><Message>{escape(message)}</Message>{extra}"
        f"<RequestId>{request_id}</RequestId><HostId>{secrets.token_urlsafe(24)}</HostId></Error>"
    )
    return web.Response(
        status=status, body=body.encode(), headers={"Content-Type": "application/xml"}
    )


def _s3_time(us: int) -> str:
    return iso(us - us % US).replace(".000000Z", "Z")


@dataclass(frozen=True)
class _Plan:
    """What one GET will send."""

    status: int
    start: int
    end: int
    cut: int | None = None  # stop after this offset (truncate / stall)
    stall: bool = False


class MediaHost:
    def __init__(self, state: SimState, *, redirect_target: bool) -> None:
        self.state = state
        self.redirect_target = redirect_target
        self.redirect_base = ""  # set by the server once the other listener is bound

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/{path:.*}", self.handle, name="media")
        return app

    async def handle(self, request: web.Request) -> web.StreamResponse:
        response = await self._serve(request)
        self.state.stats.log(
            {
                "t": time.monotonic(),
                "host": "redirect" if self.redirect_target else "media",
                "method": request.method,
                "path": request.path,
                "range": request.headers.get("Range"),
                "if_range": request.headers.get("If-Range"),
                "has_auth": "Authorization" in request.headers,
                "status": response.status,
            }
        )
        return response

    async def _serve(self, request: web.Request) -> web.StreamResponse:
        state = self.state
        stats, faults = state.stats, state.faults
        stats.requests["media"] += 1
        if "Range" in request.headers:
            stats.range_requests += 1  # however it is answered (206, 200, 416, 403, ...)
        if self.redirect_target:
            stats.violations["redirect_followed"] += 1
        if "Authorization" in request.headers:
            stats.violations["auth_to_media"] += 1
            return s3_error(400, "InvalidArgument", ONE_AUTH_MESSAGE, ArgumentName="Authorization")
        check = state.signer.check_media(request.path, request.query)
        segments = request.path.split("/")
        part = state.world.part_by_id(segments[-2]) if len(segments) >= 3 else None
        if not check.valid or part is None or segments[-1] != "video.mp4":
            return s3_error(403, "AccessDenied", "Access Denied")
        now = state.clock.now_us()
        if now > check.expires_us or faults.fire("expire"):
            return s3_error(
                403,
                "AccessDenied",
                "Request has expired",
                **{
                    "X-Amz-Expires": str(check.expires_seconds),
                    "Expires": _s3_time(check.expires_us),
                    "ServerTime": _s3_time(now),
                },
            )
        if part.recording.status(now)[0] == "deleted":  # retention over: the object is gone
            return s3_error(404, "NoSuchKey", "The specified key does not exist.")
        if faults.fire("media_5xx"):
            return s3_error(503, "SlowDown", "Please reduce your request rate.")
        if not self.redirect_target and self.redirect_base and faults.fire("redirect"):
            return web.Response(
                status=302, headers={"Location": self.redirect_base + request.path_qs}
            )
        if faults.fire("etag_change"):
            state.world.bump_version(part.id)
        return await self._send(request, part)

    async def _send(self, request: web.Request, part: PartEntry) -> web.StreamResponse:
        state = self.state
        obj = state.world.media_object(part)
        version, changed = state.world.part_version(part.id)
        digest = hashlib.sha256(f"{state.config.seed}:{part.id}:v{version}".encode()).hexdigest()
        etag = f'"{digest[:32]}"'
        finished = part.recording.vs_finished_us or part.recording.done_us
        last_modified = http_date(changed or finished)
        wanted = parse_range(request.headers.get("Range"), obj.size)
        if_range = request.headers.get("If-Range")
        if wanted is not None and if_range is not None and if_range not in (etag, last_modified):
            wanted = None  # the object changed since the client's copy: send all of it
        if isinstance(wanted, tuple) and state.faults.fire("ignore_range"):
            wanted = None
        headers = {
            "Accept-Ranges": "bytes",
            "ETag": etag,
            "Last-Modified": last_modified,
            "Content-Type": "video/mp4",
            "Server": "AmazonS3",
            "x-amz-request-id": secrets.token_hex(8).upper(),
        }
        if wanted == RANGE_UNSATISFIABLE:
            refusal = s3_error(
                416,
                "InvalidRange",
                "The requested range is not satisfiable",
                RangeRequested=request.headers.get("Range", ""),
                ActualObjectSize=str(obj.size),
            )
            refusal.headers["Content-Range"] = f"bytes */{obj.size}"
            state.stats.range_unsatisfiable += 1
            return refusal
        if isinstance(wanted, tuple):
            state.stats.partial_responses += 1
            plan = _Plan(206, *wanted)
            headers["Content-Range"] = f"bytes {plan.start}-{plan.end - 1}/{obj.size}"
        else:
            state.stats.full_requests += 1
            if "Range" in request.headers:  # If-Range mismatch, ignore_range, bad syntax
                state.stats.range_ignored += 1
            plan = _Plan(200, 0, obj.size)
        if request.method == "GET":
            plan = self._with_faults(plan)
        response = web.StreamResponse(status=plan.status, headers=headers)
        response.content_length = plan.end - plan.start
        await response.prepare(request)
        if request.method == "GET":
            await self._stream(request, response, part.id, obj, plan)
        return response

    def _with_faults(self, plan: _Plan) -> _Plan:
        length = plan.end - plan.start
        if length < 2:
            return plan
        faults = self.state.faults
        for knob in ("truncate", "stall"):
            if faults.fire(knob):
                cut = plan.start + max(1, min(length - 1, int(length * faults.fraction())))
                return _Plan(plan.status, plan.start, plan.end, cut, knob == "stall")
        return plan

    async def _stream(
        self,
        request: web.Request,
        response: web.StreamResponse,
        part_id: str,
        obj: Mp4Object,
        plan: _Plan,
    ) -> None:
        stats = self.state.stats
        rate = self.state.config.throttle_bytes_per_sec
        chunk = CHUNK_SIZE if not rate else max(1024, min(CHUNK_SIZE, rate // 20))
        stop = plan.end if plan.cut is None else plan.cut
        started, sent = time.monotonic(), 0
        with stats.download(part_id):
            try:
                for data in obj.chunks(plan.start, stop, chunk):
                    if rate:  # pace before each chunk, so nothing lingers after the last byte
                        await asyncio.sleep(max(0.0, started + sent / rate - time.monotonic()))
                    await response.write(data)
                    stats.sent(part_id, len(data))
                    sent += len(data)
                if plan.cut is not None:
                    if plan.stall:
                        await asyncio.sleep(self.state.faults.config.stall_seconds)
                    if request.transport is not None:
                        request.transport.close()
                    return
                await response.write_eof()
            except ConnectionError:
                return  # the client went away mid-body; nothing to finish
        if plan.end == obj.size:
            stats.completed_downloads_per_part[part_id] += 1
