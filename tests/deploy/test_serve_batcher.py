"""The dynamic batcher without HTTP: what it groups, how long it waits, what it refuses."""

from __future__ import annotations

import asyncio
import time

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
    assert model.sizes == [4, 4]  # the second: 3 samples padded to the bucket of 4
    # the first batch was full and ran at once; the rest waited out the delay of its oldest
    assert model.times[0] - start < 0.5 and model.times[1] - start >= 1.0


def test_a_lone_request_waits_at_most_max_delay_and_not_at_all_at_a_batch_size():
    model = Recording().eval()
    batcher = _batcher(model, torch.device("cpu"), max_delay=0.3)
    start = time.perf_counter()
    asyncio.run(_submit_all(batcher, [torch.randn(3, 3)]))  # padded to 4: waits for company
    assert time.perf_counter() - start >= 0.3 and model.sizes == [4]
    batcher = _batcher(Recording().eval(), torch.device("cpu"), max_delay=0.0)
    start = time.perf_counter()
    asyncio.run(_submit_all(batcher, [torch.randn(3, 3)]))
    assert time.perf_counter() - start < 0.25
    for n in (1, 2):  # the engine's batch sizes (1, 2, 4): nothing to gain by waiting
        model = Recording().eval()
        batcher = _batcher(model, torch.device("cpu"), max_delay=2.0)
        start = time.perf_counter()
        asyncio.run(_submit_all(batcher, [torch.randn(n, 3)]))
        assert time.perf_counter() - start < 1.0 and model.sizes == [n]
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
    assert model.sizes == [4, 4, 1]


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
