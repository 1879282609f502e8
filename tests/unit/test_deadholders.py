"""Which lease holders are dead processes on this host."""

from __future__ import annotations

import os
import subprocess
import sys

from downloader.pipeline.deadholders import dead_local_holders, pid_alive


def test_only_dead_processes_on_this_host_other_than_me() -> None:
    holders = ["h:10", "h:11", "other:10", "h:12", "h:notapid", "h:"]
    dead = dead_local_holders(holders, host="h", me="h:12", alive=lambda pid: pid == 11)
    assert dead == ["h:10"]


def test_a_host_name_with_a_colon_is_split_at_the_last_one() -> None:
    assert dead_local_holders(["a:b:7"], host="a:b", me="a:b:1", alive=lambda _: False) == ["a:b:7"]


def test_pid_alive_for_me_and_not_for_an_exited_or_zombie_child() -> None:
    assert pid_alive(os.getpid())
    assert not pid_alive(0)
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    os.waitid(os.P_PID, child.pid, os.WEXITED | os.WNOWAIT)  # exited, not reaped: a zombie
    assert not pid_alive(child.pid)
    child.wait()
    assert not pid_alive(child.pid)
