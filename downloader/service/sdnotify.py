"""The systemd notify protocol, hand-rolled (RELIABILITY.md §C).

One ``AF_UNIX``/``SOCK_DGRAM`` datagram of ``KEY=VALUE`` lines to ``$NOTIFY_SOCKET``; a
leading ``@`` names the abstract namespace. The protocol is stable and *is* the API, so there
is no reason to link libsystemd. Without ``$NOTIFY_SOCKET`` (not under systemd) every call is
a no-op. A send that fails is logged once and never stops the service: readiness is a
courtesy to the supervisor, the downloads are the job.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping

import structlog

log = structlog.get_logger(__name__)


def _address(raw: str) -> str | bytes:
    if raw.startswith("@"):
        return b"\0" + raw[1:].encode()
    return raw


def watchdog_interval(env: Mapping[str, str] | None = None) -> float | None:
    """Seconds between ``WATCHDOG=1`` pings (half of ``$WATCHDOG_USEC``), or None if unasked.

    ``$WATCHDOG_PID`` names the process the watchdog is meant for; another PID (a child that
    inherited the environment) must not ping.
    """
    env = os.environ if env is None else env
    usec, pid = env.get("WATCHDOG_USEC", ""), env.get("WATCHDOG_PID", "")
    if not usec.isdigit() or int(usec) == 0:
        return None
    if pid and (not pid.isdigit() or int(pid) != os.getpid()):
        return None
    return int(usec) / 2_000_000


class Notifier:
    """Send state changes to systemd. ``Notifier.from_env()`` in production."""

    def __init__(self, socket_path: str | None) -> None:
        self._address = _address(socket_path) if socket_path else None
        self._sock: socket.socket | None = None
        self._warned = False

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Notifier:
        env = os.environ if env is None else env
        return cls(env.get("NOTIFY_SOCKET") or None)

    @property
    def enabled(self) -> bool:
        return self._address is not None

    def send(self, **fields: str | int) -> bool:
        """Send ``KEY=value`` lines in one datagram; True when it was sent."""
        if self._address is None:
            return False
        message = "\n".join(f"{key}={value}" for key, value in fields.items())
        try:
            if self._sock is None:
                self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
                # Never block the event loop: a reader that stopped reading (its queue holds
                # a handful of datagrams) must cost a dropped STATUS, not a frozen service.
                self._sock.setblocking(False)
            self._sock.sendto(message.encode(), self._address)
        except OSError as exc:
            if not self._warned:
                log.warning("sd_notify_failed", error=exc.strerror or type(exc).__name__)
                self._warned = True
            return False
        return True

    def ready(self, status: str | None = None) -> bool:
        extra = {"STATUS": status} if status else {}
        return self.send(READY=1, MAINPID=os.getpid(), **extra)

    def status(self, text: str) -> bool:
        return self.send(STATUS=text.replace("\n", " "))

    def watchdog(self) -> bool:
        return self.send(WATCHDOG=1)

    def reloading(self) -> bool:
        return self.send(RELOADING=1)

    def stopping(self, status: str | None = None) -> bool:
        extra = {"STATUS": status} if status else {}
        return self.send(STOPPING=1, **extra)

    def extend_timeout(self, seconds: float) -> bool:
        """Ask for more time to stop (or start) than ``TimeoutStopSec`` allows."""
        return self.send(EXTEND_TIMEOUT_USEC=int(seconds * 1_000_000))

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None
