"""Find lease holders that are processes on this host which no longer exist.

A worker id is ``host:pid``. When the process behind a lease on this host is gone (SIGKILL,
OOM, a crash), its jobs can be handed on at once instead of after the lease expires — a
restarted ``fetch`` or service then resumes immediately. Holders on other hosts are left to
lease expiry: we cannot see their processes. A reused pid only makes us wait for expiry, and
should a reclaim ever hit a live holder, its lease token stops it from writing.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from pathlib import Path


def dead_local_holders(
    holders: Iterable[str], *, host: str, me: str, alive: Callable[[int], bool]
) -> list[str]:
    """The holders among ``holders`` that name a process on ``host`` which is not alive."""
    dead = []
    for holder in holders:
        holder_host, _, pid_text = holder.rpartition(":")
        if holder == me or holder_host != host or not pid_text.isdigit():
            continue
        if not alive(int(pid_text)):
            dead.append(holder)
    return dead


def pid_alive(pid: int) -> bool:
    """Whether a process with this pid exists and is not a zombie."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by another user
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True  # no procfs: trust the signal check
    # The state letter follows the parenthesised command name (which may contain spaces).
    return stat.rpartition(")")[2].split()[:1] != ["Z"]
