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


class GraphRunner:
    """``fn(example)`` captured on the input's GPU; a call replays it for a new input.

    A call returns the graph's static output buffer: the next call overwrites it (``Engine``
    clones it before returning). The runner owns what the graph reads: its input buffer and
    ``fn`` itself, whose memory the kernels use (an AOTInductor package frees its weights with
    its runner: a replay then read freed memory, "an illegal memory access", H100, 2026-11-28).
    ``pool`` is the memory pool to capture into (another runner's ``pool``, or None).
    """

    def __init__(self, fn: Runner, example: torch.Tensor, pool: Any = None,
                 warmup: int = 3) -> None:  # fmt: skip
        self.source = fn
        with torch.cuda.device(example.device):  # streams and the capture on the input's GPU
            self.input = example.clone()
            stream = torch.cuda.Stream()
            stream.wait_stream(torch.cuda.current_stream())
            with torch.no_grad(), torch.cuda.stream(stream):
                for _ in range(warmup):  # lazy initialization (handles, cuDNN autotuning) first
                    fn(self.input)
            torch.cuda.current_stream().wait_stream(stream)
            self.graph = torch.cuda.CUDAGraph()
            capture = torch.cuda.graph(self.graph, pool=pool, capture_error_mode="thread_local")
            with no_garbage_collection(), torch.no_grad(), capture:
                self.output = fn(self.input)
        self.pool = self.graph.pool()

    def __call__(self, batch: torch.Tensor) -> torch.Tensor:
        self.input.copy_(batch)
        self.graph.replay()
        return self.output
