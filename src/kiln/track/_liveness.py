"""Is a 'running' run still running? Decided on read, from its pid, host and heartbeat.

A process killed with SIGKILL (or a machine that lost power) cannot mark its run. Its run reads
as ``killed`` once its process is gone from this host, or, for a run on another host, once its
heartbeat (written every few seconds by the run's recorder) is older than ``stale_after``.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path

HOST = socket.gethostname()


def effective_status(
    status: str, pid: int | None, host: str | None, heartbeat_at: float, now: float,
    stale_after: float,
) -> str:  # fmt: skip
    if status != "running":
        return status
    if host == HOST and pid is not None and not pid_alive(pid):
        return "killed"
    if now - heartbeat_at > stale_after:
        return "killed"
    return "running"


def pid_alive(pid: int) -> bool:
    """Whether ``pid`` is a live process here (a zombie, killed but not yet reaped, is not)."""
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    stat = Path(f"/proc/{pid}/stat")
    try:
        return stat.read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True
