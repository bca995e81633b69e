"""The recorder never blocks the caller, batches writes, and survives a store that is down."""

from __future__ import annotations

import threading
import time

import pytest

from kiln.track._recorder import Recorder
from kiln.track._records import MetricPoint


def _points(n: int, start: int = 0) -> list[MetricPoint]:
    return [MetricPoint("loss", i, None, float(i), 0.0) for i in range(start, start + n)]


def test_batches_writes():
    batches: list[int] = []
    recorder = Recorder(lambda points: batches.append(len(points)), flush_interval=0.2)
    for i in range(100):
        recorder.add(_points(1, i))
    assert recorder.flush(5)
    assert sum(batches) == 100 and len(batches) <= 3
    assert recorder.close() == 0


def test_store_down_buffers_warns_once_and_catches_up():
    down, written = threading.Event(), []
    down.set()

    def write(points):
        if down.is_set():
            raise ConnectionError("database is down")
        written.extend(p.step for p in points)

    recorder = Recorder(write, flush_interval=0.05)
    with pytest.warns(RuntimeWarning, match="cannot write to the store") as caught:
        start = time.perf_counter()
        for i in range(50):
            recorder.add(_points(10, 10 * i))
        assert time.perf_counter() - start < 0.5  # adding never waits for the store
        assert not recorder.flush(0.5)
    assert len([w for w in caught if "cannot write" in str(w.message)]) == 1
    down.clear()
    assert recorder.flush(10)
    assert written == list(range(500))
    assert recorder.close() == 0


def test_close_reports_points_it_could_not_write():
    def write(points):
        raise ConnectionError("down for good")

    recorder = Recorder(write, flush_interval=0.05)
    with pytest.warns(RuntimeWarning):
        recorder.add(_points(7))
        assert recorder.close(timeout=0.3) == 7


def test_buffer_is_bounded():
    def write(points):
        raise ConnectionError("down")

    recorder = Recorder(write, flush_interval=0.05, max_buffer=100)
    with pytest.warns(RuntimeWarning):
        for i in range(10):
            recorder.add(_points(50, 50 * i))
        time.sleep(0.3)
        assert recorder.dropped >= 400
        recorder.close(timeout=0.2)
