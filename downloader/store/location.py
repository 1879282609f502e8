"""Where a SQLite state file may live: a local, writable directory (created if missing).

WAL needs the ``-wal`` and ``-shm`` files beside the database and relies on POSIX locks and
shared memory that network filesystems do not provide faithfully, so a state file on NFS or
SMB is refused up front instead of corrupting later (sqlite.org/wal.html, "useswal").
"""

from __future__ import annotations

import os
from pathlib import Path

from downloader.errors import ConfigError

NETWORK_FILESYSTEMS = frozenset(
    {"nfs", "nfs4", "cifs", "smb3", "smbfs", "ncpfs", "afs", "ceph", "glusterfs", "fuse.sshfs"}
)
MOUNTS_FILE = Path("/proc/self/mounts")


def prepare(path: Path) -> Path:
    """Absolute path of the state file after making sure its directory can hold it."""
    path = path.expanduser().absolute()
    directory = path.parent
    try:
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)  # (only if it is new)
    except OSError as exc:
        raise ConfigError(f"cannot create state directory {directory}: {exc.strerror}") from exc
    if not os.access(directory, os.W_OK | os.X_OK):
        raise ConfigError(f"state directory {directory} is not writable")
    if path.exists() and not path.is_file():
        raise ConfigError(f"state file {path} exists and is not a regular file")
    fstype = filesystem_type(directory)
    if fstype in NETWORK_FILESYSTEMS:
        raise ConfigError(
            f"state file {path} is on a {fstype} filesystem; SQLite needs a local disk "
            "(use PostgreSQL to share work between hosts)"
        )
    return path


def filesystem_type(directory: Path, mounts_file: Path = MOUNTS_FILE) -> str | None:
    """The type of the filesystem holding ``directory`` (None when it cannot be told)."""
    try:
        lines = mounts_file.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return None
    target = str(directory.resolve())
    best, best_type = "", None
    for line in lines:
        fields = line.split()
        if len(fields) < 3:
            continue
        mount_point = _unescape(fields[1])
        inside = target == mount_point or target.startswith(mount_point.rstrip("/") + "/")
        if inside and len(mount_point) >= len(best):
            best, best_type = mount_point, fields[2]
    return best_type


def _unescape(field: str) -> str:
    # /proc/mounts writes space, tab, newline and backslash as 3-digit octal escapes.
    for code in ("040", "011", "012", "134"):
        field = field.replace("\\" + code, chr(int(code, 8)))
    return field
