"""Run `recall-dl run` as a subprocess: a notify socket, its HTTP listener, signed webhooks."""

from __future__ import annotations

import base64
import json
import os
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from standardwebhooks import Webhook

from downloader.simulator import SimulatorThread

COMMAND = [sys.executable, "-m", "downloader.cli"]
SECRET = "whsec_" + base64.b64encode(b"recall-dl service test secret!!").decode()
WAIT_SECONDS = 45.0


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class NotifySocket:
    """The datagram socket systemd would listen on; collects every message the service sends."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.messages: list[dict[str, str]] = []

    def close(self) -> None:
        self.sock.close()

    def _receive(self, timeout: float) -> dict[str, str] | None:
        self.sock.settimeout(timeout)
        try:
            raw = self.sock.recv(65536).decode()
        except TimeoutError:
            return None
        message = dict(line.split("=", 1) for line in raw.splitlines() if "=" in line)
        self.messages.append(message)
        return message

    def wait_for(
        self, predicate: Callable[[dict[str, str]], bool], what: str, timeout: float = WAIT_SECONDS
    ) -> dict[str, str]:
        """Block on the socket (never a sleep) until a message matches."""
        for seen in self.messages:
            if predicate(seen):
                return seen
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            message = self._receive(left)
            if message is not None and predicate(message):
                return message
        shown = [m for m in self.messages if "WATCHDOG" not in m]
        raise AssertionError(f"no notify message {what} within {timeout} s: {shown}")

    def wait_key(
        self, key: str, value: str | None = None, timeout: float = WAIT_SECONDS
    ) -> dict[str, str]:
        return self.wait_for(
            lambda m: key in m and (value is None or m[key] == value), f"{key}={value}", timeout
        )


@dataclass
class ServiceRun:
    """One service process with its own folder, port and notify socket."""

    root: Path
    sim: SimulatorThread
    env_extra: dict[str, str] = field(default_factory=dict)
    args: tuple[str, ...] = ()
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[str] | None = None
    notify: NotifySocket | None = None

    @property
    def out(self) -> Path:
        return self.root / "out"

    @property
    def state(self) -> Path:
        return self.root / "state.db"

    @property
    def log_path(self) -> Path:
        return self.root / "service.log"

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def env(self) -> dict[str, str]:
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("RECALL_", "NOTIFY_SOCKET", "WATCHDOG_", "CREDENTIALS_DIRECTORY"))
        }
        env.update(
            {
                "RECALL_API_URL": self.sim.api_url,
                "RECALL_API_KEY": self.sim.api_key,
                "RECALL_DL_OUT": str(self.out),
                "RECALL_DL_STATE": str(self.state),
                "RECALL_DL_LOG_FORMAT": "json",
                "RECALL_DL_HTTP_LISTEN": f"127.0.0.1:{self.port}",
                "RECALL_DL_POLL_INITIAL_SECONDS": "0.2",
                "RECALL_DL_POLL_MAX_SECONDS": "0.5",
                "RECALL_DL_WEBHOOKS_ENABLED": "false",
                "RECALL_DL_SWEEP_ENABLED": "false",
            }
        )
        env.update(self.env_extra)
        return env

    def start(self, *, notify_name: str = "notify", **env: str) -> ServiceRun:
        self.root.mkdir(parents=True, exist_ok=True)
        if self.notify is not None:
            self.notify.close()
        sock_path = self.root / notify_name
        sock_path.unlink(missing_ok=True)
        self.notify = NotifySocket(sock_path)
        full_env = {**self.env(), "NOTIFY_SOCKET": str(sock_path), **env}
        log = self.log_path.open("a")
        self.proc = subprocess.Popen(
            [*COMMAND, "run", *self.args],
            env=full_env,
            stdout=subprocess.DEVNULL,
            stderr=log,
            text=True,
        )
        log.close()
        return self

    def wait_ready(self) -> dict[str, str]:
        assert self.notify is not None
        try:
            return self.notify.wait_key("READY", "1")
        except AssertionError:
            raise AssertionError(f"service never became ready; log:\n{self.log_tail()}") from None

    def stop(self, timeout: float = 60) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.terminate()
        return self.proc.wait(timeout)

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(30)
        if self.notify is not None:
            self.notify.close()
            self.notify = None

    # -- observing ---------------------------------------------------------------------------

    def log_tail(self, lines: int = 40) -> str:
        if not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text().splitlines()[-lines:])

    def events(self) -> list[dict[str, Any]]:
        out = []
        for line in self.log_path.read_text().splitlines():
            try:
                out.append(json.loads(line))
            except ValueError:
                continue
        return out

    def http(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, bytes]:
        request = urllib.request.Request(
            self.base + path, data=body, method=method, headers=headers or {}
        )
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return int(response.status), bytes(response.read())
        except urllib.error.HTTPError as exc:
            return int(exc.code), bytes(exc.read())

    def metrics(self) -> dict[str, float]:
        status, body = self.http("GET", "/metrics")
        assert status == 200
        values: dict[str, float] = {}
        for line in body.decode().splitlines():
            if line and not line.startswith("#"):
                name, _, value = line.rpartition(" ")
                values[name] = float(value)
        return values

    def jobs(self) -> dict[tuple[str, str], int]:
        with sqlite3.connect(self.state, timeout=30) as conn:
            rows = conn.execute("SELECT kind, state, count(*) FROM jobs GROUP BY kind, state")
            return {(k, s): int(n) for k, s, n in rows}

    def wait_until(
        self, condition: Callable[[], bool], what: str, timeout: float = WAIT_SECONDS
    ) -> None:
        """Re-check a condition each time the service reports (STATUS, WATCHDOG datagrams)."""
        assert self.notify is not None and self.proc is not None
        deadline = time.monotonic() + timeout
        while not condition():
            if self.proc.poll() is not None:
                raise AssertionError(
                    f"service exited ({self.proc.returncode}) before {what}:\n{self.log_tail()}"
                )
            if time.monotonic() > deadline:
                raise AssertionError(f"{what}: not reached in {timeout} s\n{self.log_tail()}")
            self.notify._receive(1.0)


def sign(
    body: dict[str, Any] | bytes,
    *,
    msg_id: str,
    family: str = "webhook",
    secret: str = SECRET,
    timestamp: float | None = None,
    extra_signatures: tuple[str, ...] = (),
) -> tuple[bytes, dict[str, str]]:
    """A Recall delivery: the raw body and its Standard Webhooks (or Svix) headers."""
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    from datetime import UTC, datetime

    when = datetime.fromtimestamp(time.time() if timestamp is None else timestamp, tz=UTC)
    signature = Webhook(secret).sign(msg_id, when, raw.decode())
    return raw, {
        "Content-Type": "application/json",
        f"{family}-id": msg_id,
        f"{family}-timestamp": str(int(when.timestamp())),
        f"{family}-signature": " ".join([*extra_signatures, signature]),
    }


def bot_event(event: str, bot_id: str) -> dict[str, Any]:
    return {
        "event": event,
        "data": {
            "data": {
                "code": event.split(".")[1],
                "sub_code": None,
                "updated_at": "2025-01-01T00:00:00Z",
            },
            "bot": {"id": bot_id, "metadata": {}},
        },
    }


def recording_event(event: str, recording_id: str, bot_id: str | None) -> dict[str, Any]:
    return {
        "event": event,
        "data": {
            "data": {
                "code": event.split(".")[1],
                "sub_code": None,
                "updated_at": "2025-01-01T00:00:00Z",
            },
            "recording": {"id": recording_id, "metadata": {}},
            "bot": None if bot_id is None else {"id": bot_id, "metadata": {}},
        },
    }


def iter_parts(
    sim: SimulatorThread, bot_ids: list[str]
) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for bot in bot_ids:
        for recording in sim.recording_ids(bot):
            for part in sim.parts(recording):
                yield bot, recording, part


def sidecar_complete(run: ServiceRun, bot_id: str) -> bool:
    for recording_id in run.sim.recording_ids(bot_id):
        if not (run.out / bot_id / recording_id / "manifest.json").is_file():
            return False
    return True


def assert_bot_complete(run: ServiceRun, bot_id: str) -> int:
    """Every part of every recording of the bot is on disk, byte-identical, in the sidecar."""
    import hashlib

    checked = 0
    for recording_id in run.sim.recording_ids(bot_id):
        folder = run.out / bot_id / recording_id
        sidecar = json.loads((folder / "manifest.json").read_text())
        assert {p["id"] for p in sidecar["parts"]} == {p["id"] for p in run.sim.parts(recording_id)}
        for entry in sidecar["parts"]:
            data = (folder / entry["path"]).read_bytes()
            assert hashlib.sha256(data).hexdigest() == entry["sha256"]
            assert entry["sha256"] == run.sim.part_sha256(entry["id"])
            checked += 1
    return checked
