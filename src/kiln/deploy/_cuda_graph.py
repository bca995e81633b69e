"""One CUDA graph per fixed batch size: a call is a copy in, one replay, and the output buffer.

Small models are launch-bound: ResNet-50 at batch 1 launches ~100 kernels, and replaying them as
one graph removes the per-kernel CPU cost. The graphs of one engine share a memory pool: calls are
single-threaded and on one stream, so their intermediates never overlap in time.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from kiln._capture import no_garbage_collection

Runner = Callable[[torch.Tensor], torch.Tensor]


def graph_runner(fn: Runner, example: torch.Tensor, pool: Any = None, warmup: int = 3) -> Runner:
    """Capture ``fn(example)`` on the input's GPU; the runner replays it for new inputs.

    The returned tensor is the graph's static output buffer: the next call overwrites it
    (``Engine`` clones it before returning). The runner holds on to ``fn``: the graph replays
    its kernels on its memory, and an AOTInductor package frees its weights when its runner
    goes (a replay then reads freed memory: "an illegal memory access", H100, 2026-11-28).
    """
    with torch.cuda.device(example.device):  # streams and the capture on the input's GPU
        static_input = example.clone()
        stream = torch.cuda.Stream()
        stream.wait_stream(torch.cuda.current_stream())
        with torch.no_grad(), torch.cuda.stream(stream):
            for _ in range(warmup):  # lazy initialization (handles, cuDNN autotuning) first
                fn(static_input)
        torch.cuda.current_stream().wait_stream(stream)
        graph = torch.cuda.CUDAGraph()
        capture = torch.cuda.graph(graph, pool=pool, capture_error_mode="thread_local")
        with no_garbage_collection(), torch.no_grad(), capture:
            static_output = fn(static_input)

    def run(batch: torch.Tensor) -> torch.Tensor:
        static_input.copy_(batch)
        graph.replay()
        return static_output

    run.pool = graph.pool()  # type: ignore[attr-defined]
    run.captured = fn  # type: ignore[attr-defined]
    return run
