"""A training step captured in CUDA graphs: one graph per batch shape, replayed after warm-up.

Small models are launch-bound: Python and kernel launches, not arithmetic, set their speed.
Capturing the whole step (forward, loss, backward, optimizer, metric sums) in one CUDA graph
turns hundreds of launches into one. The step must be static: it reads its inputs from fixed
buffers, keeps all state in place (optimizer state, a tensor learning rate, on-device sums)
and never syncs with the host. Each batch shape (the full batches, the last partial one) gets
its own graph, sharing one memory pool; the first ``warmup`` steps of each shape run eagerly
on a side stream, as graph capture requires, and count as ordinary training steps. A shape
that comes after a graph was captured (the epoch's partial last batch) needs less: the
optimizer's state and the libraries are set up by then (``LATER_WARMUP``). With
``later_shapes=False`` only the first shape is captured and the others run eagerly (while
another thread works on the GPU, as ``CompileBehind``'s compile does, capturing is not safe).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch.utils._pytree import tree_flatten, tree_unflatten

from kiln._capture import no_garbage_collection

Step = Callable[..., None]


class CudaGraphStep:
    # eager runs of a shape that comes after the first capture; 3 (as ``warmup``) keeps
    # LeNet-5's partial batch eager through its first three epochs. 1 made no difference to
    # its steady epochs (0.101 s/epoch both, one call on an H200, 2026-11-28, ``train_speed.py``
    # row kiln-partial-graph)
    LATER_WARMUP = 3

    def __init__(
        self, step: Step, zero_grad: Callable[[], None], warmup: int = 3, later_shapes: bool = True
    ) -> None:
        self.step = step
        self.later_shapes = later_shapes
        self.zero_grad = zero_grad
        self.warmup = warmup
        self._graphs: dict[tuple[Any, ...], tuple[torch.cuda.CUDAGraph, list[torch.Tensor]]] = {}
        self._eager_runs: dict[tuple[Any, ...], int] = {}
        self._pool: Any = None
        self._stream = torch.cuda.Stream()

    def __call__(self, *batch: Any) -> None:
        leaves, spec = tree_flatten(batch)
        key = tuple((t.shape, t.dtype) if isinstance(t, torch.Tensor) else t for t in leaves)
        if key in self._graphs:
            graph, static = self._graphs[key]
            for buffer, value in zip(static, leaves, strict=True):
                if isinstance(buffer, torch.Tensor):
                    buffer.copy_(value, non_blocking=True)
            graph.replay()
        elif not self._ready_to_capture(key):
            self._eager_runs[key] = self._eager_runs.get(key, 0) + 1
            self._on_side_stream(lambda: self.step(*batch))
        else:
            self._capture(key, leaves, spec)

    def _ready_to_capture(self, key: tuple[Any, ...]) -> bool:
        if not self._graphs:
            return self._eager_runs.get(key, 0) >= self.warmup
        return self.later_shapes and self._eager_runs.get(key, 0) >= self.LATER_WARMUP

    @property
    def captured(self) -> int:
        """How many batch shapes have a graph."""
        return len(self._graphs)

    def _capture(self, key: tuple[Any, ...], leaves: list[Any], spec: Any) -> None:
        static = [t.clone() if isinstance(t, torch.Tensor) else t for t in leaves]
        graph = torch.cuda.CUDAGraph()
        self.zero_grad()  # gradients are allocated inside the graph, in its pool
        torch.cuda.synchronize()
        with no_garbage_collection(), torch.cuda.graph(graph, pool=self._pool):
            self.step(*tree_unflatten(static, spec))
        self._pool = graph.pool()
        self._graphs[key] = (graph, static)
        graph.replay()  # capture records without running: now run this batch

    def _on_side_stream(self, fn: Callable[[], None]) -> None:
        self._stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(self._stream):
            fn()
        torch.cuda.current_stream().wait_stream(self._stream)
