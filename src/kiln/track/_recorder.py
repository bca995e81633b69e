"""``Recorder``: a background thread that batches a run's writes, so training never waits.

``add`` puts points on a queue and returns at once. The thread writes whatever has queued every
``flush_interval`` seconds in one transaction, and heartbeats between writes. If the store is
down, points stay in memory (at most ``max_buffer``; the oldest are dropped past that) and the
thread retries with backoff; the first failure warns once, recovery is logged.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
import warnings
from collections.abc import Callable, Sequence

from kiln.track._records import MetricPoint

log = logging.getLogger("kiln.track")


class Recorder:
    def __init__(
        self, write: Callable[[Sequence[MetricPoint]], None], *, flush_interval: float = 0.5,
        heartbeat_interval: float = 10.0, max_buffer: int = 1_000_000, name: str = "run",
    ) -> None:  # fmt: skip
        self._write, self._name = write, name
        self.flush_interval, self.heartbeat_interval = flush_interval, heartbeat_interval
        self.max_buffer = max_buffer
        self._queue: queue.SimpleQueue[list[MetricPoint]] = queue.SimpleQueue()
        self._buffer: list[MetricPoint] = []
        self._added = self._written = self.dropped = 0
        self._lock = threading.Condition()
        self._stop = threading.Event()
        self._failing = False
        self._thread = threading.Thread(target=self._loop, name=f"kiln-recorder-{name}",
                                        daemon=True)  # fmt: skip
        self._thread.start()

    def add(self, points: list[MetricPoint]) -> None:
        """Queue ``points``; never blocks on the store."""
        with self._lock:
            self._added += len(points)
        self._queue.put(points)

    def flush(self, timeout: float = 30.0) -> bool:
        """Wait until everything added so far is written; False after ``timeout`` seconds."""
        with self._lock:
            target = self._added
            self._queue.put([])  # wake the thread: write now, not at the next interval
            return self._lock.wait_for(lambda: self._written + self.dropped >= target, timeout)

    def close(self, timeout: float = 30.0) -> int:
        """Write what is left (trying for up to ``timeout`` s), stop; return points lost."""
        self.flush(timeout)
        self._stop.set()
        self._queue.put([])  # wake the thread so it sees the stop now
        self._thread.join(timeout=max(1.0, self.flush_interval * 4))
        with self._lock:
            lost = self._added - self._written
        if lost:
            warnings.warn(f"kiln.track: {lost} metric points of run {self._name!r} could not "
                          "be written: the store stayed unreachable.", RuntimeWarning,
                          stacklevel=2)  # fmt: skip
        return lost

    def _loop(self) -> None:
        backoff = self.flush_interval
        last_write = time.monotonic()
        while not self._stop.is_set():
            self._drain(timeout=backoff)
            due = time.monotonic() - last_write >= self.heartbeat_interval
            if not (self._buffer or due):
                continue
            if self._try_write():
                backoff, last_write = self.flush_interval, time.monotonic()
            else:
                backoff = min(backoff * 2, 5.0)

    def _drain(self, timeout: float) -> None:
        try:
            self._buffer.extend(self._queue.get(timeout=timeout))
            while True:
                self._buffer.extend(self._queue.get_nowait())
        except queue.Empty:
            pass
        excess = len(self._buffer) - self.max_buffer
        if excess > 0:
            del self._buffer[:excess]
            with self._lock:
                self.dropped += excess
                self._lock.notify_all()

    def _try_write(self) -> bool:
        batch = self._buffer[:]
        try:
            self._write(batch)
        except Exception as error:  # the store is down: keep the points, retry later
            if not self._failing:
                warnings.warn(f"kiln.track: cannot write to the store ({type(error).__name__}: "
                              f"{error}); training goes on, metrics are kept in memory and "
                              "written when it is back.", RuntimeWarning, stacklevel=1)  # fmt: skip
            self._failing = True
            return False
        if self._failing:
            log.warning("kiln.track: the store is reachable again; %d points written", len(batch))
        self._failing = False
        del self._buffer[: len(batch)]
        with self._lock:
            self._written += len(batch)
            self._lock.notify_all()
        return True
