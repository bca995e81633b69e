"""What a run records about where it ran: host, Python, torch, GPUs, git commit."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from typing import Any

from kiln._version import __version__


def system_info() -> dict[str, Any]:
    import torch

    info: dict[str, Any] = {
        "host": platform.node(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "kiln": __version__,
        "cpu_count": os.cpu_count(),
        "cuda": torch.version.cuda,
        "gpus": [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())],
        "argv": sys.argv[:20],
        "cwd": os.getcwd(),
    }
    info.update(git_info())
    return info


def git_info(cwd: str | None = None) -> dict[str, Any]:
    """The commit (and whether the tree has changes) of the git repository at ``cwd``, if any."""
    try:
        commit = _git(["rev-parse", "HEAD"], cwd)
        dirty = bool(_git(["status", "--porcelain", "--untracked-files=no"], cwd))
    except (OSError, subprocess.SubprocessError):
        return {}
    return {"git_commit": commit, "git_dirty": dirty} if commit else {}


def _git(args: list[str], cwd: str | None) -> str:
    done = subprocess.run(
        ["git", *args], cwd=cwd, capture_output=True, text=True, timeout=5, check=True
    )
    return done.stdout.strip()
