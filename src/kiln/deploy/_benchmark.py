"""Latency and throughput of an engine per batch size, as plain data.

Each call is timed on its own, from the call to its result being ready (``synchronize`` on
CUDA), after a warm-up: that is the latency a request sees when the engine runs one batch at a
time, which is how the server calls it. Throughput per batch size is ``batch / mean latency``;
``best`` is the batch size with the highest throughput whose p99 latency fits the SLO.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import torch

from kiln.deploy._engine import Engine


@dataclass(frozen=True)
class Timing:
    batch_size: int
    p50_ms: float
    p99_ms: float
    mean_ms: float
    throughput: float  # samples (images) per second
    calls: int


@dataclass
class Benchmark:
    name: str
    device: str
    rows: list[Timing]
    slo_ms: float | None = None
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def latency(self) -> Timing:
        """Batch-1 (the smallest batch size) timing."""
        return min(self.rows, key=lambda r: r.batch_size)

    @property
    def peak(self) -> Timing:
        return max(self.rows, key=lambda r: r.throughput)

    @property
    def best(self) -> Timing | None:
        """The highest throughput with p99 <= slo_ms (None: no SLO, or none meets it)."""
        fits = [r for r in self.rows if self.slo_ms is None or r.p99_ms <= self.slo_ms]
        return max(fits, key=lambda r: r.throughput) if fits and self.slo_ms else None

    def as_dict(self) -> dict[str, Any]:
        best = self.best
        return {"name": self.name, "device": self.device, "slo_ms": self.slo_ms,
                "rows": [asdict(r) for r in self.rows], "latency": asdict(self.latency),
                "peak": asdict(self.peak), "best": asdict(best) if best else None,
                "info": self.info}  # fmt: skip


def time_calls(fn: Callable[[], Any], calls: int, device: torch.device, warmup: int = 5,
               min_seconds: float = 0.0, warmup_s: float = 0.0) -> list[float]:  # fmt: skip
    """Seconds per call of ``fn`` (each call waited for), after ``warmup`` calls and at least
    ``warmup_s`` seconds of calls.

    Runs at least ``calls`` calls and, when ``min_seconds`` is set, until that much time passed.
    The warm-up by time is for GPUs left idle by what came before (a build, another engine),
    whose clocks and caches may take longer to settle than ten calls: 200 batch-1 calls of
    ResNet-50 last 70 ms on an H200.
    """
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda *_: None)
    started = time.perf_counter()
    done = 0
    while done < warmup or time.perf_counter() - started < warmup_s:
        fn()
        sync(device)
        done += 1
    times: list[float] = []
    started = time.perf_counter()
    while len(times) < calls or time.perf_counter() - started < min_seconds:
        t0 = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - t0)
    return times


def graph_time(fn: Callable[[], Any], reps: int, replays: int = 20, warmup: int = 3) -> float:
    """Microseconds per call of ``fn`` on the current GPU: ``reps`` calls captured in one CUDA
    graph, the median of ``replays`` replays (CUDA events), so that the gaps between kernels
    count as they do in an engine's graph, and the host's launches do not."""
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        for _ in range(warmup):  # lazy initialization (cuDNN's plan choice, Triton's compile)
            fn()
    torch.cuda.current_stream().wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        for _ in range(reps):
            fn()
    graph.replay()
    times = []
    for _ in range(replays):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        graph.replay()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end) * 1e3 / reps)
    return sorted(times)[len(times) // 2]


def timing(batch_size: int, seconds: Sequence[float]) -> Timing:
    ms = torch.tensor(seconds, dtype=torch.float64) * 1e3
    mean = float(ms.mean())
    return Timing(batch_size, float(ms.quantile(0.5)), float(ms.quantile(0.99)), mean,
                  batch_size / mean * 1e3, len(ms))  # fmt: skip


def benchmark(
    engine: Engine,
    batch_sizes: Sequence[int] | None = None,
    calls: int = 200,
    warmup: int = 10,
    slo_ms: float | None = None,
    min_seconds: float = 0.0,
    warmup_s: float = 0.0,
) -> Benchmark:
    """Time ``engine`` at each of ``batch_sizes`` (default: the engine's) on random inputs,
    each after ``warmup`` calls and ``warmup_s`` seconds of them (see ``time_calls``)."""
    sizes = sorted(set(batch_sizes or engine.batch_sizes))
    if not sizes or min(sizes) < 1 or calls < 1:
        raise ValueError(f"benchmark needs batch sizes >= 1 and calls >= 1. Received: "
                         f"batch_sizes={batch_sizes!r}, calls={calls!r}.")  # fmt: skip
    rows = []
    for size in sizes:
        batch = random_batch(engine, size)

        def call(batch: torch.Tensor = batch) -> torch.Tensor:
            return engine(batch)

        times = time_calls(call, calls, engine.device, warmup, min_seconds, warmup_s)
        rows.append(timing(size, times))
    info = {k: engine.info.get(k) for k in ("precision", "compiled", "cuda_graphs")}
    return Benchmark(engine.name, str(engine.device), rows, slo_ms, info)


def random_batch(engine: Engine, size: int) -> torch.Tensor:
    """Random inputs for ``engine`` on its device: uint8 images, or normal floats."""
    shape = (size, *engine.input_shape)
    if engine.input_dtype == torch.uint8:
        return torch.randint(0, 256, shape, dtype=torch.uint8, device=engine.device)
    if not engine.input_dtype.is_floating_point:
        return torch.zeros(shape, dtype=engine.input_dtype, device=engine.device)
    return torch.randn(shape, device=engine.device).to(engine.input_dtype)


def plot(results: Sequence[Benchmark], path: str) -> None:
    """Throughput against p99 latency per batch size, one line per engine, to a PNG."""
    from kiln._extras import require

    require("matplotlib", "plot")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for result in results:
        xs = [r.p99_ms for r in result.rows]
        ys = [r.throughput for r in result.rows]
        ax.plot(xs, ys, marker="o", label=f"{result.name} ({result.device})")
        for r in result.rows:
            ax.annotate(f"b={r.batch_size}", (r.p99_ms, r.throughput), fontsize=8,
                        textcoords="offset points", xytext=(4, 4))  # fmt: skip
    slo = next((r.slo_ms for r in results if r.slo_ms), None)
    if slo:
        ax.axvline(slo, color="gray", linestyle="--", label=f"SLO {slo:g} ms")
    ax.set(xlabel="p99 latency per batch (ms)", ylabel="throughput (samples/s)", xscale="log",
           title="kiln bench: throughput vs latency")  # fmt: skip
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
