"""Tiny scriptable HTTP servers on real sockets, for client edge cases the simulator does
not produce (hostile links, odd bodies, redirects). Each test installs handlers per path."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import anyio
from aiohttp import web
from aiohttp.test_utils import TestServer

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass
class Seen:
    t: float
    method: str
    path: str
    query: str
    headers: dict[str, str]
    body: bytes


@dataclass
class FakeHost:
    server: TestServer
    routes: dict[str, Handler] = field(default_factory=dict)
    seen: list[Seen] = field(default_factory=list)
    release: anyio.Event = field(default_factory=anyio.Event)

    @property
    def url(self) -> str:
        return str(self.server.make_url("")).rstrip("/")

    def at(self, path: str) -> str:
        return self.url + path

    def paths(self) -> list[str]:
        return [s.path for s in self.seen]


async def _dispatch(host: FakeHost, request: web.Request) -> web.StreamResponse:
    body = await request.read()
    host.seen.append(
        Seen(
            t=time.monotonic(),
            method=request.method,
            path=request.path,
            query=request.query_string,
            headers=dict(request.headers),
            body=body,
        )
    )
    handler = host.routes.get(request.path)
    if handler is None:
        return web.json_response({"detail": "Not found."}, status=404)
    return await handler(request)


@asynccontextmanager
async def fake_host() -> AsyncIterator[FakeHost]:
    app = web.Application()
    holder: dict[str, FakeHost] = {}

    async def dispatch(request: web.Request) -> web.StreamResponse:
        return await _dispatch(holder["host"], request)

    app.router.add_route("*", "/{tail:.*}", dispatch)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    host = holder["host"] = FakeHost(server)
    try:
        yield host
    finally:
        host.release.set()
        await server.close()


def json_reply(data: Any, status: int = 200, **headers: str) -> Handler:
    async def handler(request: web.Request) -> web.StreamResponse:
        return web.json_response(data, status=status, headers=headers)

    return handler


def sequence(*handlers: Handler) -> Handler:
    """Answer with each handler in turn; the last one repeats."""
    calls = {"n": 0}

    async def handler(request: web.Request) -> web.StreamResponse:
        index = min(calls["n"], len(handlers) - 1)
        calls["n"] += 1
        return await handlers[index](request)

    return handler


def raw_reply(status: int, body: bytes, content_type: str, **headers: str) -> Handler:
    async def handler(request: web.Request) -> web.StreamResponse:
        return web.Response(status=status, body=body, content_type=content_type, headers=headers)

    return handler


def hang(host: FakeHost) -> Handler:
    async def handler(request: web.Request) -> web.StreamResponse:
        await host.release.wait()
        return web.json_response({})

    return handler
