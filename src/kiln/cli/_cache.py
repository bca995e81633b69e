"""``kiln cache``: where kiln keeps compiled kernels, how much room they take, and clearing them.

``fit()`` keeps Inductor's compiled kernels (``~/.cache/kiln/torchinductor``, or
``TORCHINDUCTOR_CACHE_DIR``) so that the next run of a model starts sooner. Nothing prunes the
folder: each new model, shape, precision, torch version or environment adds to it (Inductor's
folder on our development machine held 39 GB after two days of tests, 38 of them C++ headers
precompiled once per virtual environment). ``kiln cache`` shows its size by part; ``kiln cache
clear`` empties it, and the next run of each model compiles from scratch once.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
from pathlib import Path
from typing import Any

COMMANDS = ("cache",)

# folders Inductor writes at the top of its cache: ``clear`` empties a folder holding one of
# them, and refuses any other (TORCHINDUCTOR_CACHE_DIR may name a folder of the user's own)
_INDUCTOR_PARTS = ("fxgraph", "aotautograd", "triton")


def add_parsers(subparsers: Any) -> None:
    """Add the ``cache`` subcommand to ``kiln``'s subparsers."""
    cache = subparsers.add_parser(
        "cache", help="show kiln's compile cache (compiled kernels) and its size, or clear it"
    )
    cache.add_argument(
        "action", nargs="?", choices=["info", "clear"], default="info",
        help="info (default): the folder and its size by part; clear: empty it",
    )  # fmt: skip


def run(args: argparse.Namespace) -> int:
    from kiln.train._fast_path import compile_cache_dir

    folder = compile_cache_dir()
    if not folder.is_dir() or not any(folder.iterdir()):
        print(f"kiln cache: {folder} is empty (nothing compiled yet).")
        return 0
    parts = sorted(((_size(p), p.name) for p in folder.iterdir()), reverse=True)
    total = sum(size for size, _ in parts)
    if args.action == "info":
        print(f"kiln cache: {folder}: {_human(total)} (compiled kernels; `kiln cache clear` "
              "empties it)")  # fmt: skip
        for size, name in parts[:8]:
            print(f"  {_human(size):>9}  {name}")
        if len(parts) > 8:
            print(f"  {_human(sum(s for s, _ in parts[8:])):>9}  {len(parts) - 8} more")
        return 0
    if not any((folder / part).exists() for part in _INDUCTOR_PARTS):
        raise SystemExit(
            f"kiln cache: {folder} does not look like a compile cache (no "
            f"{', '.join(_INDUCTOR_PARTS)} folder in it), so it was left alone. Check "
            "TORCHINDUCTOR_CACHE_DIR, or delete the folder yourself."
        )
    for path in folder.iterdir():
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
    left = _size(folder)
    print(f"kiln cache: cleared {folder}, {_human(total - left)} freed"
          + (f" ({_human(left)} could not be removed)" if left else "")
          + ". Each model compiles from scratch on its next run.")  # fmt: skip
    return 0


def _size(path: Path) -> int:
    """Bytes under ``path`` (files only; links not followed)."""
    if not path.is_dir() or path.is_symlink():
        try:
            return path.lstat().st_size
        except FileNotFoundError:
            return 0
    total = 0
    for root, _, files in os.walk(path):
        for name in files:
            with contextlib.suppress(OSError):  # removed meanwhile (a compile beside us)
                total += os.lstat(os.path.join(root, name)).st_size
    return total


def _human(n: int) -> str:
    size = float(n)
    for unit in ("B", "KB", "MB"):
        if size < 1024:
            return f"{n} B" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} GB"
