"""`Heartbeat`: a thread that tells a study, every few seconds, which trials are still running.

A study cannot see a worker die (SIGKILL, a lost host): it only sees the heartbeats stop. Once a
running trial's heartbeat is older than the study's `stale_after`, the trial reads as stale and
its point is free again (the same idea as kiln.track's liveness of runs).
"""

from __future__ import annotations

import contextlib
import threading
import warnings
from collections.abc import Callable, Iterator
from types import TracebackType


class Heartbeat:
    """Calls `beat(numbers)` every `interval` seconds, from a daemon thread, with the numbers of
    the trials inside `running(number)` blocks. A beat that raises (the store or the server
    briefly down) warns once and is retried at the next interval."""

    def __init__(self, beat: Callable[[list[int]], object], interval: float) -> None:
        self._beat, self.interval = beat, float(interval)
        self._live: set[int] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="kiln-heartbeat")
        self._warned = False

    def __enter__(self) -> Heartbeat:
        self._thread.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stop.set()
        self._thread.join()

    @contextlib.contextmanager
    def running(self, number: int) -> Iterator[None]:
        with self._lock:
            self._live.add(number)
        try:
            yield
        finally:
            with self._lock:
                self._live.discard(number)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            with self._lock:
                live = sorted(self._live)
            if not live:
                continue
            try:
                self._beat(live)
            except Exception as e:
                if not self._warned:
                    warnings.warn(f"kiln.tune: a heartbeat failed and will be retried ({e})",
                                  RuntimeWarning, stacklevel=1)  # fmt: skip
                    self._warned = True
