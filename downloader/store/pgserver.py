"""A throwaway PostgreSQL server started from the installed binaries (tests, benchmarks).

It listens on 127.0.0.1 at a free port with a private unix socket directory, trusts local
connections, and skips fsync (its data is deleted on stop). ``initdb`` refuses to run as
root, so as root the server runs as the unprivileged ``nobody`` user in a directory that
user owns; as anyone else it runs as that user.

Usage::

    with TempPostgres() as pg:
        url = pg.create_database()     # postgresql://postgres@127.0.0.1:PORT/db_1
"""

from __future__ import annotations

import atexit
import itertools
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

INSTALL_HINT = "install postgresql (apt-get install postgresql)"
SEARCH_GLOB = "/usr/lib/postgresql/*/bin"
UNPRIVILEGED_USER = "nobody"
START_TIMEOUT_SECONDS = 60
SERVER_SETTINGS = {
    "listen_addresses": "127.0.0.1",
    "fsync": "off",  # throwaway data: durability is not under test here, speed is welcome
    "synchronous_commit": "off",
    "full_page_writes": "off",
    "max_connections": "300",
}


class PostgresUnavailable(RuntimeError):
    """The server binaries are missing or the server would not start."""


@dataclass(frozen=True)
class _RunAs:
    uid: int | None  # None: run as ourselves
    gid: int | None


def find_bin_dir() -> Path:
    """The directory holding initdb and pg_ctl: PATH first, then Debian's versioned dirs."""
    on_path = shutil.which("initdb")
    candidates = [Path(on_path).resolve().parent] if on_path else []
    versioned = sorted(Path("/").glob(SEARCH_GLOB.lstrip("/")), key=_version, reverse=True)
    candidates += versioned
    for directory in candidates:
        if (directory / "initdb").is_file() and (directory / "pg_ctl").is_file():
            return directory
    raise PostgresUnavailable(
        f"PostgreSQL server binaries (initdb, pg_ctl) not found: {INSTALL_HINT}"
    )


def _version(bin_dir: Path) -> tuple[int, ...]:
    name = bin_dir.parent.name
    return tuple(int(p) for p in name.split(".") if p.isdigit())


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class TempPostgres:
    """Start with :meth:`start` (or ``with``); :meth:`stop` kills it and deletes its data."""

    def __init__(self) -> None:
        self.bin_dir = find_bin_dir()
        self.port = 0
        self._root: Path | None = None
        self._run_as = _unprivileged() if os.geteuid() == 0 else _RunAs(None, None)
        self._names = itertools.count(1)

    @property
    def host(self) -> str:
        return "127.0.0.1"

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@{self.host}:{self.port}/{database}"

    def __enter__(self) -> TempPostgres:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def start(self) -> None:
        if self._root is not None:
            return
        root = Path(tempfile.mkdtemp(prefix="recall-dl-pg-", dir=_traversable_tmp()))
        self._root = root
        atexit.register(self.stop)
        try:
            self._chown(root)
            self._run(
                "initdb", "-D", str(self._data), "-U", "postgres", "--auth=trust",
                "--encoding=UTF8", "--locale=C", "--no-sync",
            )  # fmt: skip
            self._start_server()
        except BaseException:
            self.stop()
            raise

    def create_database(self) -> str:
        """A new, empty database; returns its URL."""
        name = f"db_{next(self._names)}"
        self._run("createdb", "-h", self.host, "-p", str(self.port), "-U", "postgres", name)
        return self.url(name)

    def stop(self) -> None:
        root, self._root = self._root, None
        if root is None:
            return
        atexit.unregister(self.stop)
        try:
            if (root / "data" / "postmaster.pid").exists():
                self._run("pg_ctl", "-D", str(root / "data"), "-m", "immediate", "-w", "stop")
        finally:
            shutil.rmtree(root, ignore_errors=True)

    @property
    def _data(self) -> Path:
        assert self._root is not None
        return self._root / "data"

    def _start_server(self) -> None:
        assert self._root is not None
        sockets = self._root / "sockets"
        sockets.mkdir()
        self._chown(sockets)
        last: PostgresUnavailable | None = None
        for _ in range(3):  # a free port can be taken between probing and binding
            self.port = _free_port()
            settings = {**SERVER_SETTINGS, "port": str(self.port)}
            settings["unix_socket_directories"] = str(sockets)
            options = " ".join(f"-c {k}={v}" for k, v in settings.items())
            try:
                self._run(
                    "pg_ctl", "-D", str(self._data), "-l", str(self._root / "server.log"),
                    "-w", "-t", str(START_TIMEOUT_SECONDS), "-o", options, "start",
                )  # fmt: skip
                return
            except PostgresUnavailable as exc:
                last = exc
        raise last or PostgresUnavailable("postgres did not start")

    def _chown(self, path: Path) -> None:
        if self._run_as.uid is not None and self._run_as.gid is not None:
            os.chown(path, self._run_as.uid, self._run_as.gid)

    def _run(self, program: str, *args: str) -> None:
        command = [str(self.bin_dir / program), *args]
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LC_ALL": "C", "TZ": "UTC"}
        result = subprocess.run(  # noqa: S603 -- fixed binaries, our own arguments
            command,
            capture_output=True,
            text=True,
            env=env,
            cwd=self._root or "/",
            user=self._run_as.uid,
            group=self._run_as.gid,
            extra_groups=[] if self._run_as.uid is not None else None,
            timeout=START_TIMEOUT_SECONDS * 2,
            check=False,
        )
        if result.returncode != 0:
            log = self._server_log_tail()
            raise PostgresUnavailable(
                f"{program} failed ({result.returncode}): {result.stderr.strip()}{log}"
            )

    def _server_log_tail(self) -> str:
        if self._root is None:
            return ""
        try:
            lines = (self._root / "server.log").read_text(errors="replace").splitlines()
        except OSError:
            return ""
        return "\nserver log:\n" + "\n".join(lines[-20:])


def _unprivileged() -> _RunAs:
    try:
        entry = pwd.getpwnam(UNPRIVILEGED_USER)
    except KeyError as exc:
        raise PostgresUnavailable(
            f"running as root and there is no {UNPRIVILEGED_USER!r} user to run postgres as"
        ) from exc
    return _RunAs(entry.pw_uid, entry.pw_gid)


def _traversable_tmp() -> str:
    # The unprivileged user must reach its directory: root's private TMPDIR would not do.
    base = tempfile.gettempdir()
    if os.geteuid() == 0 and not os.stat(base).st_mode & 0o001:
        return "/tmp"  # noqa: S108 -- world-traversable; our directory inside is private
    return base
