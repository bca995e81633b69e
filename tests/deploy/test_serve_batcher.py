"""The dynamic batcher without HTTP: what it groups, how long it waits, what it refuses.

An engine of sizes (1, 2, 4) times two calls of each before it serves: a Recording model's
first six sizes are that warm-up."""

from __future__ import annotations

import asyncio
import threading
import time

import numpy as np
import pytest
import torch

from kiln.deploy import eager_engine
from kiln.deploy._batcher import Batcher, EngineError, QueueFullError, TooLargeError
from kiln.deploy._metrics import ServeMetrics


class Recording(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.linear = torch.nn.Linear(3, 2)
        self.sizes: list[int] = []
        self.times: list[float] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.sizes.append(len(x))
        self.times.append(time.perf_counter())
        return self.linear(x)


def _batcher(model: torch.nn.Module, device: torch.device, **options) -> Batcher:
    engine = eager_engine(model.to(device), torch.zeros(1, 3, device=device), (1, 2, 4))
    return Batcher(engine, ServeMetrics(dict), name="m", **options)


async def _submit_all(batcher: Batcher, batches: list[torch.Tensor]) -> list[torch.Tensor]:
    batcher.start(asyncio.get_running_loop())
    try:
        return list(await asyncio.gather(*(batcher.submit(b) for b in batches)))
    finally:
        batcher.stop()


def test_requests_fill_the_largest_batch_and_get_their_own_rows(device):
    model = Recording().eval()
    batcher = _batcher(model, device, max_delay=1.0)
    # 3 + 1 fill a batch of 4; then 3 (no batch size: padded to 4) wait. Torch or numpy: both
    parts = [torch.randn(n, 3) for n in (3, 1, 3)]
    start = time.perf_counter()
    outputs = asyncio.run(_submit_all(batcher, [p.numpy() for p in parts[:2]] + parts[2:]))
    with torch.no_grad():
        for part, out in zip(parts, outputs):
            torch.testing.assert_close(torch.from_numpy(out), model.linear(part.to(device)).cpu())
    assert model.sizes == [1, 1, 2, 2, 4, 4, 4, 4]  # the last: 3 samples padded to 4
    # the first batch was full and ran at once; the rest waited out the delay of its oldest
    assert model.times[6] - start < 0.5 and model.times[7] - start >= 1.0


def test_a_lone_request_waits_at_most_max_delay_and_not_at_all_at_a_batch_size():
    model = Recording().eval()
    batcher = _batcher(model, torch.device("cpu"), max_delay=0.3)
    start = time.perf_counter()
    asyncio.run(_submit_all(batcher, [torch.randn(3, 3)]))  # padded to 4: waits for company
    assert time.perf_counter() - start >= 0.3 and model.sizes == [1, 1, 2, 2, 4, 4, 4]
    batcher = _batcher(Recording().eval(), torch.device("cpu"), max_delay=0.0)
    start = time.perf_counter()
    asyncio.run(_submit_all(batcher, [torch.randn(3, 3)]))
    assert time.perf_counter() - start < 0.25
    for n in (1, 2):  # the engine's batch sizes (1, 2, 4): nothing to gain by waiting
        model = Recording().eval()
        batcher = _batcher(model, torch.device("cpu"), max_delay=2.0)
        start = time.perf_counter()
        asyncio.run(_submit_all(batcher, [torch.randn(n, 3)]))
        assert time.perf_counter() - start < 1.0 and model.sizes == [1, 1, 2, 2, 4, 4, n]
    batcher = _batcher(Recording().eval(), torch.device("cpu"), max_delay=0.3,
                       preferred_sizes=False)  # fmt: skip
    start = time.perf_counter()
    asyncio.run(_submit_all(batcher, [torch.randn(2, 3)]))
    assert time.perf_counter() - start >= 0.3


def test_a_request_larger_than_the_largest_batch_runs_alone_split_by_the_engine():
    model = Recording().eval()
    batcher = _batcher(model, torch.device("cpu"), max_delay=0.0)
    x = torch.randn(9, 3)
    (out,) = asyncio.run(_submit_all(batcher, [x]))
    with torch.no_grad():
        torch.testing.assert_close(torch.from_numpy(out), model.linear(x))
    assert model.sizes == [1, 1, 2, 2, 4, 4, 4, 4, 1]


def test_queue_limits_and_engine_errors():
    class Broken(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            raise RuntimeError("cuBLAS went away")

    async def scenario() -> None:
        # the queue must hold what arrives: no batch runs at one of the sizes (1, 2, 4) early
        batcher = _batcher(Broken(), torch.device("cpu"), max_delay=0.5, max_queue=3,
                           preferred_sizes=False)  # fmt: skip
        batcher.start(asyncio.get_running_loop())
        try:
            with pytest.raises(TooLargeError, match="queues at most 3 samples; this request has 4"):
                batcher.submit(torch.zeros(4, 3))
            waiting = batcher.submit(torch.zeros(2, 3))
            with pytest.raises(QueueFullError, match="queue holds 2 samples"):
                batcher.submit(torch.zeros(2, 3))
            assert batcher.depth == 2
            second = batcher.submit(torch.zeros(1, 3))  # fits: 3 samples
            for future in (waiting, second):  # one batch of 3: both fail with the engine
                with pytest.raises(
                    EngineError, match="'m': the engine failed: RuntimeError: cuBLAS"
                ):
                    await future
            assert batcher.depth == 0
        finally:
            batcher.stop()

    asyncio.run(scenario())


def test_invalid_options_are_refused():
    with pytest.raises(ValueError, match="Received: max_delay=-1, max_queue=1"):
        _batcher(Recording(), torch.device("cpu"), max_delay=-1, max_queue=1)


# ---- which prefix of the queue a batch takes (engine times given, so no clock decides) -------

H100 = {8: 0.75e-3, 64: 2.6e-3}  # ResNet-50's engine seconds per call at 8 and 64


class Held(Recording):
    """A Recording whose first call holds the worker until ``release`` is set: what a test
    submits meanwhile waits in the queue together for the next batch."""

    def __init__(self) -> None:
        super().__init__()
        self.busy, self.release = threading.Event(), threading.Event()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.busy.is_set():
            self.busy.set()
            assert self.release.wait(30), "the test never released the engine"
        return super().forward(x)


def _held_batcher(model: Held, **options) -> Batcher:
    engine = eager_engine(model, torch.zeros(1, 3), (8, 64))
    return Batcher(engine, ServeMetrics(dict), name="m", max_delay=0.0, **options)


async def _queued_together(
    batcher: Batcher, model: Held, batches: list[torch.Tensor], first: torch.Tensor | None = None
) -> list[np.ndarray | BaseException]:
    """The outcomes (rows or errors) of ``batches``, all queued while the engine's first call
    holds the worker: the call for ``first``, else the warm-up's first."""
    batcher.start(asyncio.get_running_loop())
    try:
        held = [] if first is None else [batcher.submit(first)]
        assert await asyncio.to_thread(model.busy.wait, 30), "the engine was never called"
        futures = [batcher.submit(batch) for batch in batches]
        model.release.set()
        await asyncio.gather(*held)
        return list(await asyncio.gather(*futures, return_exceptions=True))
    finally:
        batcher.stop()


def _sizes_after_first(requests: list[int], **options) -> list[int]:
    """The engine's batch sizes for ``requests`` (samples each) queued behind a first request of
    8, on an engine of sizes (8, 64)."""
    model = Held().eval()
    batches = [torch.randn(n, 3) for n in requests]
    asyncio.run(_queued_together(_held_batcher(model, **options), model, batches,
                                 first=torch.randn(8, 3)))  # fmt: skip
    assert model.sizes[0] == 8
    return model.sizes[1:]


def test_a_batch_takes_the_prefix_with_the_least_engine_time_per_sample():
    # three 8s: 0.75/8 = 0.094 ms a sample one at a time; 2.6/16 and 2.6/24 padded to 64
    assert _sizes_after_first([8, 8, 8], batch_times=H100) == [8, 8, 8]
    assert _sizes_after_first([8] * 8, batch_times=H100) == [64]  # 2.6/64 = 0.041 ms
    assert _sizes_after_first([8, 8, 8], batch_times=H100, preferred_sizes=False) == [64]
    # 6.0/64 = 0.75/8 exactly: a tie goes to the larger prefix
    assert _sizes_after_first([8] * 8, batch_times={8: 0.75e-3, 64: 6e-3}) == [64]
    # a size with no time: take all that fits, as without preferred sizes
    assert _sizes_after_first([8, 8, 8], batch_times={8: 0.75e-3}) == [64]


def test_requests_split_over_several_batches_get_their_own_rows():
    model = Held().eval()
    parts = [torch.randn(n, 3) for n in (3, 5, 2, 6, 4, 4)]  # 24: three prefixes of 8 each
    batcher = _held_batcher(model, batch_times=H100)
    outputs = asyncio.run(_queued_together(batcher, model, parts, first=torch.randn(8, 3)))
    assert model.sizes == [8, 8, 8, 8]
    with torch.no_grad():
        for part, out in zip(parts, outputs):
            torch.testing.assert_close(torch.from_numpy(out), model.linear(part))


def test_the_warm_up_times_each_size_and_a_failing_size_takes_all():
    class FailsAt64(Held):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            if len(x) == 64:
                raise RuntimeError("out of memory at 64")
            return super().forward(x)

    model = FailsAt64().eval()
    batcher = _held_batcher(model)  # timed: the warm-up's call at 8 holds the worker
    outcomes = asyncio.run(_queued_together(batcher, model, [torch.randn(8, 3)] * 3))
    assert list(batcher.batch_times) == [8] and batcher.batch_times[8] > 0
    # 64 has no time, so the three 8s ran together, padded to 64, and failed together
    for outcome in outcomes:
        assert isinstance(outcome, EngineError) and "out of memory at 64" in str(outcome)
    model = Held().eval()
    batcher = _held_batcher(model)
    outputs = asyncio.run(_queued_together(batcher, model, [torch.randn(8, 3)]))
    assert sorted(batcher.batch_times) == [8, 64] and len(outputs[0]) == 8
    assert model.sizes == [8, 8, 64, 64, 8]  # the warm-up, then the request


def test_real_batches_move_the_time_of_their_size_by_a_moving_average():
    batcher = _batcher(Recording(), torch.device("cpu"))  # sizes (1, 2, 4)
    batcher._record(3, 1.0)  # no time yet: the first one stands
    batcher._record(4, 2.0)
    batcher._record(9, 50.0)  # split by the engine: no one size's time
    assert batcher.batch_times == {4: pytest.approx(1.1)}


def test_batch_times_are_keyed_by_the_engine_s_sizes():
    with pytest.raises(ValueError, match=r"sizes \(8, 64\). Received: \{16: 0.001\}"):
        _held_batcher(Held(), batch_times={16: 1e-3})
