"""A small client for the simulator's hosts, and a context manager that runs one."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import aiohttp

from downloader.simulator import Simulator, SimulatorConfig

FAST = SimulatorConfig(
    bots=3,
    participants_per_bot=2,
    parts_per_participant=2,
    part_size=4096,
    time_scale=0,
    seed=7,
)


@dataclass
class Reply:
    status: int
    headers: Mapping[str, str]
    body: bytes

    def json(self) -> Any:
        import json

        return json.loads(self.body)


@dataclass
class Client:
    sim: Simulator
    session: aiohttp.ClientSession

    def _auth(self, auth: str | None) -> dict[str, str]:
        return {} if auth is None else {"Authorization": auth}

    async def get(
        self,
        url: str,
        *,
        auth: str | None = None,
        headers: Mapping[str, str] | None = None,
        params: Any = None,
        allow_redirects: bool = False,
        data: bytes | None = None,
    ) -> Reply:
        merged = {**self._auth(auth), **(headers or {})}
        async with self.session.get(
            url,
            headers=merged,
            params=params,
            allow_redirects=allow_redirects,
            data=data,
        ) as response:
            body = await response.read()
            return Reply(response.status, response.headers, body)

    async def api(self, path: str, params: Any = None, **kw: Any) -> Reply:
        """GET an API path with the right key (``Token <key>`` form)."""
        url = path if path.startswith("http") else self.sim.api_url + path
        return await self.get(url, auth=f"Token {self.sim.api_key}", params=params, **kw)

    async def api_json(self, path: str, params: Any = None) -> Any:
        reply = await self.api(path, params)
        assert reply.status == 200, (reply.status, reply.body[:300])
        return reply.json()

    async def walk(self, path: str, params: Any = None) -> list[Any]:
        """Follow ``next`` links to the end; returns every result."""
        page = await self.api_json(path, params)
        results = list(page["results"])
        while page["next"]:
            page = await self.api_json(page["next"])
            results += page["results"]
        return results

    async def manifest(self, recording_id: str) -> list[dict[str, Any]]:
        vs = await self.api_json("/api/v1/video_separate/", {"recording_id": recording_id})
        url = vs["results"][0]["data"]["download_url"]
        reply = await self.get(url)
        assert reply.status == 200, reply.body
        parts: list[dict[str, Any]] = reply.json()
        return parts


@asynccontextmanager
async def running(config: SimulatorConfig = FAST) -> AsyncIterator[Client]:
    async with Simulator(config) as sim, aiohttp.ClientSession(auto_decompress=False) as session:
        yield Client(sim, session)
