"""Download a file from the first mirror that serves it intact.

Each file is streamed to a hidden temp file next to its destination while its md5 is computed,
checked against the known checksum, and only then renamed into place (``os.replace`` is
atomic), so an interrupted or corrupt download never leaves a file that looks complete.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
import urllib.request
from collections.abc import Sequence
from pathlib import Path

from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)

TIMEOUT_S = 10.0  # per connect and per read; a dead mirror fails fast and the next is tried
_CHUNK = 1 << 16


class DownloadError(OSError):
    """Every mirror failed; the message lists each URL and why."""


def offline() -> bool:
    """True when the environment variable ``KILN_OFFLINE`` is set (to anything but 0/false/no)."""
    return os.environ.get("KILN_OFFLINE", "").strip().lower() not in ("", "0", "false", "no")


def fetch(filename: str, md5: str, mirrors: Sequence[str], dest: Path) -> Path:
    """Download ``filename`` into folder ``dest`` from the first mirror whose copy has ``md5``."""
    dest.mkdir(parents=True, exist_ok=True)
    failures = []
    for mirror in mirrors:
        url = mirror.rstrip("/") + "/" + filename
        try:
            return _fetch_one(url, md5, dest / filename)
        except (OSError, ValueError) as err:  # URLError and timeouts are OSErrors
            failures.append(f"  {url}: {err}")
    raise DownloadError(f"could not download {filename}; tried:\n" + "\n".join(failures))


def _fetch_one(url: str, md5: str, target: Path) -> Path:
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=TIMEOUT_S) as resp:
            digest = _copy_with_progress(resp, out, target.name, resp.headers.get("Content-Length"))
        if digest != md5:
            raise ValueError(f"md5 {digest} does not match the known {md5}")
        os.replace(tmp, target)
        return target
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


def _copy_with_progress(src, out, name: str, length: str | None) -> str:
    md5 = hashlib.md5()
    columns = (
        TextColumn(f"[bold]{name}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns, transient=True) as progress:
        task = progress.add_task(name, total=int(length) if length else None)
        while chunk := src.read(_CHUNK):
            md5.update(chunk)
            out.write(chunk)
            progress.advance(task, len(chunk))
    return md5.hexdigest()
