"""What ``kiln.deploy.optimize`` is doing, and how long each part took.

Building ResNet-50's packages takes minutes, so a build says what it does as it goes: a live
status line over rich log lines when stderr is a terminal, and plain timestamped lines, flushed,
when it is a file or a pipe (a benchmark's subprocess, CI). Every phase's seconds land in
``timings`` (``engine.info["timings"]``) whether or not anything is printed.
"""

from __future__ import annotations

import faulthandler
import os
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, TextIO

PREFIX = "kiln.deploy"


class Progress:
    """Log lines and phase timings for one build; ``enabled=False`` only records timings."""

    def __init__(self, enabled: bool, stream: TextIO | None = None) -> None:
        self.enabled = enabled
        self.stream = stream if stream is not None else sys.stderr
        self.started = time.perf_counter()
        self.timings: dict[str, float] = {}
        self._live: Any = None
        if enabled and self.stream.isatty():
            from rich.console import Console

            self._console = Console(file=self.stream)
            self._live = self._console.status(f"{PREFIX}: starting")
            self._live.start()

    def log(self, message: str) -> None:
        if not self.enabled:
            return
        stamp = time.strftime("%H:%M:%S")
        line = f"[{PREFIX} {stamp} +{time.perf_counter() - self.started:6.1f}s] {message}"
        if self._live is not None:  # above the live line
            self._console.print(line, markup=False, highlight=False)
        else:
            print(line, file=self.stream, flush=True)

    def status(self, message: str) -> None:
        """The live line (a terminal only): what runs now."""
        if self._live is not None:
            self._live.update(f"{PREFIX}: {message}")

    def record(self, name: str, seconds: float) -> None:
        self.timings[name] = round(seconds, 3)

    @contextmanager
    def phase(self, name: str, what: str) -> Iterator[None]:
        """Time the block as ``timings[name]``; log ``what`` when it starts and ends."""
        self.status(what)
        self.log(f"{what} ...")
        started = time.perf_counter()
        yield
        self.record(name, time.perf_counter() - started)
        self.log(f"{what}: done in {self.timings[name]:.1f} s")

    def close(self) -> dict[str, float]:
        """Stop the live line; the timings with ``total``."""
        self.record("total", time.perf_counter() - self.started)
        self.log(f"done in {self.timings['total']:.1f} s")
        if self._live is not None:
            self._live.stop()
            self._live = None
        return self.timings


@contextmanager
def watching() -> Iterator[None]:
    """Every thread's stack to stderr every ``$KILN_BUILD_STACKS`` seconds while inside (none
    when unset or 0): for a build that takes longer than it should."""
    text = os.environ.get("KILN_BUILD_STACKS", "")
    try:
        every = float(text or 0)
    except ValueError:
        every = 0.0
        print(f"KILN_BUILD_STACKS takes seconds (e.g. 30). Received: {text!r}; ignored.",
              file=sys.stderr)  # fmt: skip
    if every > 0:
        faulthandler.dump_traceback_later(every, repeat=True, file=sys.stderr)
    try:
        yield
    finally:
        if every > 0:
            faulthandler.cancel_dump_traceback_later()
