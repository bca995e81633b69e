"""``Batcher``: dynamic batching in front of one ``Engine``.

Requests (one or more samples each) wait in a queue; one worker thread, the engine's only
caller, takes whole requests in arrival order (at most the engine's largest batch size, or one
larger request alone), runs the engine once and hands each request its rows through an asyncio
future (resolved on the event loop, once per batch). It waits at most ``max_delay`` for more
once the oldest request arrived, and not at all when the queue holds exactly one of the
engine's batch sizes: that batch needs no padding, and waiting would only add the delay to its
latency (Triton's rule for preferred batch sizes).

Then it takes the prefix of the queue that costs the least engine time per sample: n samples
run at the next batch size, ``engine.bucket(n)``, so a prefix costs time(bucket(n)) / n. On an
engine built for (8, 64) that calls 64 at 2.6 ms and 8 at 0.75 ms, three queued 8-image
requests run one at a time (24 images padded to 64 would cost more per image), eight run
together; ties go to the larger prefix. The rest stays queued, in order, for the next batch
(its oldest request has usually waited out the delay already, so that batch runs at once). The
worker times each batch size on zeros before it serves (the faster of two calls), then follows
each size's time by an exponential moving average of real batches; a size without a time (its
call failed) makes the batch take all that fits. ``preferred_sizes=False`` turns both rules
off: wait out the delay, then take all that fits.

Contract: ``submit`` is called on the event loop; it never blocks, and raises ``QueueFullError``
at once when the queue would hold more than ``max_queue`` samples. An engine error fails the
requests of that batch only (``EngineError``); the worker lives on.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import torch

from kiln.deploy._codecs import Batch, to_numpy
from kiln.deploy._engine import Engine
from kiln.deploy._metrics import ServeMetrics

log = logging.getLogger("kiln.serve")

SMOOTHING = 0.1  # the weight of a batch's time in its batch size's moving average


class UnavailableError(RuntimeError):
    """The batcher is stopping: the server answers 503."""


class QueueFullError(UnavailableError):
    """The queue holds too many samples: the server answers 429 (retry later)."""


class TooLargeError(ValueError):
    """One request has more samples than the queue may ever hold: 413."""


class EngineError(RuntimeError):
    """The engine raised on a batch: its requests answer 500."""


@dataclass
class _Request:
    batch: Batch
    future: asyncio.Future[np.ndarray]
    arrived: float = field(default_factory=time.perf_counter)


class Batcher:
    def __init__(
        self,
        engine: Engine,
        metrics: ServeMetrics,
        *,
        name: str | None = None,
        max_delay: float = 0.001,
        max_queue: int = 1024,
        preferred_sizes: bool = True,
        batch_times: Mapping[int, float] | None = None,
    ) -> None:
        """``batch_times``: seconds per engine call at each batch size, used as given instead
        of timed, and never updated (reproducible batches: tests)."""
        if max_delay < 0 or max_queue < 1:
            raise ValueError(
                f"Batcher needs max_delay >= 0 and max_queue >= 1. "
                f"Received: max_delay={max_delay}, max_queue={max_queue}."
            )
        if batch_times is not None and not set(batch_times) <= set(engine.batch_sizes):
            raise ValueError(
                f"Batcher's batch_times are keyed by the engine's batch sizes "
                f"{engine.batch_sizes}. Received: {dict(batch_times)}."
            )
        self.engine, self.metrics = engine, metrics
        self.max_delay, self.max_queue = max_delay, max_queue
        # run at once at one of the engine's sizes; take the cheapest prefix (the module notes)
        self.preferred_sizes = preferred_sizes
        # seconds per engine call by batch size; only the worker writes it once started
        self.batch_times: dict[int, float] = dict(batch_times or {})
        self._timing = preferred_sizes and batch_times is None  # at start and every batch
        self.name = engine.name if name is None else name
        self.labels = (("model", self.name),)
        self._queue: deque[_Request] = deque()
        self._queued = 0  # samples in _queue
        self._cond = threading.Condition()
        self._stopped = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()  # set once the worker serves (after timing the sizes)
        self._staging: tuple[torch.Tensor, np.ndarray] | None = None  # pinned (CUDA engines)

    @property
    def depth(self) -> int:
        """Samples waiting in the queue."""
        return self._queued

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._thread = threading.Thread(
            target=self._work, name=f"kiln-batcher-{self.name}", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        """Stop the worker after its current batch; fail what still waits."""
        with self._cond:
            self._stopped = True
            waiting, self._queue, self._queued = list(self._queue), deque(), 0
            self._cond.notify()
        error = UnavailableError("the server is shutting down")
        for request in waiting:
            if not request.future.done():
                request.future.set_exception(error)
        if self._thread is not None:
            self._thread.join(timeout=30)

    def submit(self, batch: Batch) -> asyncio.Future[np.ndarray]:
        """Queue ``batch`` (N samples); the future resolves to the engine's N output rows."""
        assert self._loop is not None, "Batcher.start(loop) first"
        future: asyncio.Future[np.ndarray] = self._loop.create_future()
        n = len(batch)
        with self._cond:
            if self._stopped:
                raise UnavailableError("the server is shutting down")
            self.check_room(n)
            self._queue.append(_Request(batch, future))
            self._queued += n
            self._cond.notify()
        return future

    def check_room(self, n: int) -> None:
        """Raise unless the queue has room for ``n`` more samples now."""
        if n > self.max_queue:
            raise TooLargeError(
                f"model {self.name!r} queues at most {self.max_queue} samples; this request has "
                f"{n}. Split it, or start the server with a larger --max-queue."
            )
        if self._queued + n > self.max_queue:
            raise QueueFullError(
                f"model {self.name!r} is busy: its queue holds {self._queued} samples and takes "
                f"at most {self.max_queue}; this request has {n}. Retry later."
            )

    # ---- the worker thread ----------------------------------------------------------------

    def wait_ready(self, timeout: float | None = None) -> bool:
        """Block until the worker has timed the engine's batch sizes and serves (True), or
        ``timeout`` seconds passed (False). The server reports ready only after this."""
        return self._ready.wait(timeout)

    def _work(self) -> None:
        if self._timing:
            self._time_batch_sizes()
        self._ready.set()
        while (requests := self._take()) is not None:
            self._run(requests)

    def _time_batch_sizes(self) -> None:
        """Time each batch size before serving (what arrives meanwhile waits): the faster of
        two calls, as a size's first call pays one-time costs (2-6x on the CPU)."""
        for size in self.engine.batch_sizes:
            try:
                self.batch_times[size] = min(self._time_call(size) for _ in range(2))
            except Exception:  # the size keeps no time: batches that would run at it take all
                log.exception("model %r: timing batch size %d failed", self.name, size)
                self._settle_device()

    def _time_call(self, size: int) -> float:
        zeros = torch.zeros((size, *self.engine.input_shape), dtype=self.engine.input_dtype)
        start = time.perf_counter()
        to_numpy(self.engine(zeros))  # waits for a CUDA engine
        return time.perf_counter() - start

    def _take(self) -> list[_Request] | None:
        """The next batch: wait for a request, then up to ``max_delay`` after it arrived unless
        the queue holds one of the engine's batch sizes exactly; then the cheapest prefix."""
        limit = self.engine.max_batch_size
        exact = set(self.engine.batch_sizes) if self.preferred_sizes else set()
        with self._cond:
            while not self._queue and not self._stopped:
                self._cond.wait()
            deadline = self._queue[0].arrived + self.max_delay if self._queue else 0.0
            while not self._stopped and self._queued < limit and self._queued not in exact:
                remaining = deadline - time.perf_counter()
                if remaining <= 0:
                    break
                self._cond.wait(remaining)
            if self._stopped:
                return None
            taken = [self._queue.popleft() for _ in range(self._choose())]
            self._queued -= sum(len(request.batch) for request in taken)
            return taken

    def _choose(self) -> int:
        """How many queued requests the next batch takes (the module notes)."""
        counts = self._prefix_counts()
        if not self.preferred_sizes or len(counts) == 1:
            return len(counts)
        sizes = [self.engine.bucket(n) for n in counts]
        if not all(size in self.batch_times for size in sizes):
            return len(counts)
        # a size never picked is never timed again: one whose time starts too high stays unpicked
        costs = [self.batch_times[size] / n for size, n in zip(sizes, counts)]
        cheapest = min(costs)
        return max(i for i, cost in enumerate(costs) if cost == cheapest) + 1  # ties: larger

    def _prefix_counts(self) -> list[int]:
        """Samples in each prefix of the queue that fits the largest batch size (the first
        request always does: the engine splits a larger one)."""
        counts: list[int] = []
        n = 0
        for request in self._queue:
            n += len(request.batch)
            if counts and n > self.engine.max_batch_size:
                break
            counts.append(n)
        return counts

    def _run(self, requests: list[_Request]) -> None:
        start = time.perf_counter()
        try:
            outputs = to_numpy(self.engine(self._assemble([r.batch for r in requests])))
            ends = np.cumsum([len(r.batch) for r in requests])
            # numpy views: no torch call per request (each would hand the GIL over)
            rows: list[np.ndarray] | BaseException = np.split(outputs, ends[:-1])
        except Exception as error:  # any engine failure fails this batch only
            log.exception("model %r: the engine failed on a batch", self.name)
            self._settle_device()
            rows = EngineError(
                f"model {self.name!r}: the engine failed: {type(error).__name__}: {error}"
            )
        elapsed = time.perf_counter() - start
        if self._timing and not isinstance(rows, BaseException):
            self._record(sum(len(r.batch) for r in requests), elapsed)
        self._observe(requests, start, elapsed)
        assert self._loop is not None
        # a loop closed while this batch ran raises RuntimeError: nobody waits any more
        with contextlib.suppress(RuntimeError):
            self._loop.call_soon_threadsafe(_deliver, requests, rows)

    def _assemble(self, parts: list[Batch]) -> torch.Tensor:
        """One batch from the requests' arrays; for CUDA, one copy into pinned memory, so the
        engine's host->device transfer is a single asynchronous copy."""
        device = self.engine.device
        if any(isinstance(part, torch.Tensor) for part in parts):  # decoded on the GPU, bf16
            tensors = [torch.as_tensor(part).to(device, non_blocking=True) for part in parts]
            return tensors[0] if len(tensors) == 1 else torch.cat(tensors)
        arrays: list[np.ndarray] = parts  # type: ignore[assignment]
        n = sum(len(array) for array in arrays)
        if device.type != "cuda" or n > self.engine.max_batch_size:
            return torch.from_numpy(arrays[0] if len(arrays) == 1 else np.concatenate(arrays))
        if self._staging is None:
            shape = (self.engine.max_batch_size, *self.engine.input_shape)
            pinned = torch.empty(shape, dtype=self.engine.input_dtype, pin_memory=True)
            self._staging = pinned, pinned.numpy()
        # Reusing the buffer next batch is safe: to_numpy's .cpu() waited for this copy.
        pinned, view = self._staging
        np.concatenate(arrays, out=view[:n])
        return pinned[:n]

    def _settle_device(self) -> None:
        """After a failure, wait for copies still reading the staging buffer."""
        if self.engine.device.type == "cuda":
            try:
                torch.cuda.synchronize(self.engine.device)
            except Exception:  # a broken device fails the next batch clearly
                log.exception("CUDA synchronize failed after an engine error")

    def _record(self, n: int, elapsed: float) -> None:
        """Move the time of the batch size ``n`` samples ran at towards ``elapsed``."""
        if n > self.engine.max_batch_size:  # the engine split it: several calls
            return
        size = self.engine.bucket(n)
        before = self.batch_times.get(size, elapsed)
        self.batch_times[size] = before + SMOOTHING * (elapsed - before)

    def _observe(self, requests: list[_Request], start: float, elapsed: float) -> None:
        n = sum(len(r.batch) for r in requests)
        self.metrics.batch_size.observe(self.labels, n)
        self.metrics.samples.inc(self.labels, n)
        self.metrics.engine_time.observe(self.labels, elapsed)
        for request in requests:
            self.metrics.queue_wait.observe(self.labels, start - request.arrived)


def _deliver(requests: list[_Request], rows: list[np.ndarray] | BaseException) -> None:
    for i, request in enumerate(requests):
        if request.future.done():  # the client went away
            continue
        if isinstance(rows, BaseException):
            request.future.set_exception(rows)
        else:
            request.future.set_result(rows[i])
