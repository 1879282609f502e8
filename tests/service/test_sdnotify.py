"""The hand-rolled sd_notify: datagrams on a real socket, watchdog interval from the env."""

from __future__ import annotations

import os
import socket
import uuid
from pathlib import Path

import pytest

from downloader.service.sdnotify import Notifier, watchdog_interval


def receive(sock: socket.socket) -> dict[str, str]:
    sock.settimeout(5)
    raw = sock.recv(4096).decode()
    return dict(line.split("=", 1) for line in raw.splitlines())


def test_messages_reach_a_path_socket(tmp_path: Path) -> None:
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(str(tmp_path / "notify"))
        notifier = Notifier.from_env({"NOTIFY_SOCKET": str(tmp_path / "notify")})
        assert notifier.ready("queue: empty")
        assert receive(sock) == {
            "READY": "1",
            "MAINPID": str(os.getpid()),
            "STATUS": "queue: empty",
        }
        assert notifier.status("two\nlines")
        assert receive(sock) == {"STATUS": "two lines"}
        notifier.watchdog()
        assert receive(sock) == {"WATCHDOG": "1"}
        notifier.stopping()
        assert receive(sock) == {"STOPPING": "1"}
        notifier.extend_timeout(2.5)
        assert receive(sock) == {"EXTEND_TIMEOUT_USEC": "2500000"}
        notifier.close()


def test_abstract_namespace_socket() -> None:
    name = f"recall-dl-test-{uuid.uuid4().hex}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind("\0" + name)
        notifier = Notifier(f"@{name}")
        assert notifier.reloading()
        assert receive(sock) == {"RELOADING": "1"}
        notifier.close()


def test_without_systemd_nothing_is_sent_and_nothing_fails(tmp_path: Path) -> None:
    assert not Notifier.from_env({}).ready()
    gone = Notifier(str(tmp_path / "nobody-listens"))
    assert not gone.ready()  # logged once, never raised
    assert not gone.watchdog()
    gone.close()


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({}, None),
        ({"WATCHDOG_USEC": "0"}, None),
        ({"WATCHDOG_USEC": "60000000"}, 30.0),
        ({"WATCHDOG_USEC": "60000000", "WATCHDOG_PID": str(os.getpid())}, 30.0),
        ({"WATCHDOG_USEC": "60000000", "WATCHDOG_PID": "1"}, None),
        ({"WATCHDOG_USEC": "soon"}, None),
    ],
)
def test_watchdog_interval_is_half_of_watchdog_usec(
    env: dict[str, str], expected: float | None
) -> None:
    assert watchdog_interval(env) == expected


def test_a_reader_that_stops_reading_never_blocks_the_sender(tmp_path: Path) -> None:
    """A datagram queue holds a handful of messages; past that, sending must fail at once
    (this runs on the event loop) instead of waiting for the reader."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(str(tmp_path / "notify"))
        notifier = Notifier.from_env({"NOTIFY_SOCKET": str(tmp_path / "notify")})
        sent = [notifier.status(f"queue {i}") for i in range(200)]  # would hang if blocking
        assert sent[0] and not all(sent)
        assert receive(sock) == {"STATUS": "queue 0"}
        notifier.close()
