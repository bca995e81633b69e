"""A 'running' run reads as 'killed' once its process is gone or its heartbeat is stale."""

from __future__ import annotations

import os
import subprocess
import sys

from kiln.track._liveness import HOST, effective_status, pid_alive


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_this_host():
    dead = _dead_pid()
    assert effective_status("running", os.getpid(), HOST, 0.0, 1.0, 120) == "running"
    assert effective_status("running", dead, HOST, 1.0, 1.0, 120) == "killed"
    assert effective_status("finished", dead, HOST, 1.0, 1.0, 120) == "finished"


def test_other_host_goes_by_heartbeat():
    assert effective_status("running", 1, "elsewhere", 100.0, 200.0, 120) == "running"
    assert effective_status("running", 1, "elsewhere", 100.0, 221.0, 120) == "killed"


def test_a_zombie_is_not_alive():
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOWAIT)  # exited, not reaped: a zombie
    assert not pid_alive(proc.pid)
    proc.wait()
    assert pid_alive(os.getpid())
