"""``Batcher``: dynamic batching in front of one ``Engine``.

Requests (one or more samples each) wait in a queue; one worker thread, the engine's only
caller, takes as many queued samples as fit the engine's largest batch size, runs the engine
once and hands each request its rows through an asyncio future (resolved on the event loop,
once per batch). It waits at most ``max_delay`` for more once the oldest request arrived, and
not at all when the queue holds exactly one of the engine's batch sizes: that batch needs no
padding, and waiting would only add the delay to its latency (Triton's rule for preferred
batch sizes). One client sending 8 images at a time to an engine built for 8 never waits.

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
from dataclasses import dataclass, field

import numpy as np
import torch

from kiln.deploy._codecs import Batch, to_numpy
from kiln.deploy._engine import Engine
from kiln.deploy._metrics import ServeMetrics

log = logging.getLogger("kiln.serve")


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
    ) -> None:
        if max_delay < 0 or max_queue < 1:
            raise ValueError(
                f"Batcher needs max_delay >= 0 and max_queue >= 1. "
                f"Received: max_delay={max_delay}, max_queue={max_queue}."
            )
        self.engine, self.metrics = engine, metrics
        self.max_delay, self.max_queue = max_delay, max_queue
        # run at once when the queue holds one of the engine's sizes exactly (the module notes)
        self.preferred_sizes = preferred_sizes
        self.name = engine.name if name is None else name
        self.labels = (("model", self.name),)
        self._queue: deque[_Request] = deque()
        self._queued = 0  # samples in _queue
        self._cond = threading.Condition()
        self._stopped = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
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

    def _work(self) -> None:
        while (requests := self._take()) is not None:
            self._run(requests)

    def _take(self) -> list[_Request] | None:
        """The next batch: wait for a request, then up to ``max_delay`` after it arrived unless
        the queue holds one of the engine's batch sizes exactly."""
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
            taken: list[_Request] = []
            n = 0
            while self._queue and (not taken or n + len(self._queue[0].batch) <= limit):
                request = self._queue.popleft()
                taken.append(request)
                n += len(request.batch)
            self._queued -= n
            return taken

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
