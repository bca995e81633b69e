"""Counters, gauges and histograms of the inference server, in the Prometheus text format.

A few dozen lines instead of a client library: the server observes from two threads (the
event loop and the batch worker), so each family updates under its own lock.
"""

from __future__ import annotations

import bisect
import math
import threading
from collections.abc import Callable, Iterable

LATENCY_BUCKETS = (
    0.0005,
    0.001,
    0.002,
    0.003,
    0.005,
    0.007,
    0.01,
    0.02,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
)

Labels = tuple[tuple[str, str], ...]


class Counter:
    def __init__(self, name: str, help: str) -> None:
        self.name, self.help, self.kind = name, help, "counter"
        self._values: dict[Labels, float] = {}
        self._lock = threading.Lock()

    def inc(self, labels: Labels, amount: float = 1.0) -> None:
        with self._lock:
            self._values[labels] = self._values.get(labels, 0.0) + amount

    def get(self, labels: Labels) -> float:
        return self._values.get(labels, 0.0)

    def samples(self) -> Iterable[tuple[str, Labels, float]]:
        with self._lock:
            values = list(self._values.items())
        return [(f"{self.name}_total", labels, value) for labels, value in values]


class Gauge:
    """A value read when scraped (``read`` returns labels -> value)."""

    def __init__(self, name: str, help: str, read: Callable[[], dict[Labels, float]]) -> None:
        self.name, self.help, self.kind = name, help, "gauge"
        self._read = read

    def samples(self) -> Iterable[tuple[str, Labels, float]]:
        return [(self.name, labels, value) for labels, value in self._read().items()]


class Histogram:
    def __init__(self, name: str, help: str, buckets: Iterable[float]) -> None:
        self.name, self.help, self.kind = name, help, "histogram"
        self.buckets = tuple(sorted(buckets))
        self._series: dict[Labels, list[float]] = {}  # bucket counts..., count, sum
        self._lock = threading.Lock()

    def observe(self, labels: Labels, value: float) -> None:
        index = bisect.bisect_left(self.buckets, value)
        with self._lock:
            series = self._series.get(labels)
            if series is None:
                series = self._series[labels] = [0.0] * (len(self.buckets) + 2)
            series[index] += 1  # index len(buckets) is the +Inf-only bucket
            series[-1] += value

    def count(self, labels: Labels) -> int:
        series = self._series.get(labels)
        return 0 if series is None else int(sum(series[:-1]))

    def samples(self) -> Iterable[tuple[str, Labels, float]]:
        with self._lock:
            series = {labels: list(values) for labels, values in self._series.items()}
        out = []
        for labels, values in series.items():
            cumulative = 0.0
            for bound, count in zip((*self.buckets, math.inf), values):
                cumulative += count
                out.append((f"{self.name}_bucket", (*labels, ("le", _number(bound))), cumulative))
            out.append((f"{self.name}_count", labels, cumulative))
            out.append((f"{self.name}_sum", labels, values[-1]))
        return out


Metric = Counter | Gauge | Histogram


def exposition(metrics: Iterable[Metric]) -> str:
    """The Prometheus text format (version 0.0.4) of ``metrics``."""
    lines = []
    for metric in metrics:
        lines += [f"# HELP {metric.name} {metric.help}", f"# TYPE {metric.name} {metric.kind}"]
        for name, labels, value in metric.samples():
            text = ",".join(f'{key}="{_escape(val)}"' for key, val in labels)
            lines.append(
                f"{name}{{{text}}} {_number(value)}" if text else f"{name} {_number(value)}"
            )
    return "\n".join(lines) + "\n"


def _number(value: float) -> str:
    if value == math.inf:
        return "+Inf"
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


class ServeMetrics:
    """The families ``kiln serve`` exposes at ``/metrics``, labelled by model."""

    def __init__(self, queue_depths: Callable[[], dict[str, int]]) -> None:
        def depths() -> dict[Labels, float]:
            return {(("model", name),): float(depth) for name, depth in queue_depths().items()}

        self.requests = Counter("kiln_serve_requests", "Inference requests by model and status.")
        self.samples = Counter("kiln_serve_samples", "Samples run by the engines.")
        self.queue = Gauge("kiln_serve_queue_samples", "Samples waiting for a batch.", depths)
        self.batch_size = Histogram(
            "kiln_serve_batch_size",
            "Samples per engine call.",
            (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024),
        )
        self.queue_wait = Histogram(
            "kiln_serve_queue_wait_seconds",
            "Time from admission to the engine call.",
            LATENCY_BUCKETS,
        )
        self.engine_time = Histogram(
            "kiln_serve_engine_seconds", "Time of one engine call (one batch).", LATENCY_BUCKETS
        )
        self.latency = Histogram(
            "kiln_serve_request_seconds", "Time from request to response (total).", LATENCY_BUCKETS
        )

    def text(self) -> str:
        return exposition(
            [
                self.requests,
                self.samples,
                self.queue,
                self.batch_size,
                self.queue_wait,
                self.engine_time,
                self.latency,
            ]
        )
