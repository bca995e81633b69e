"""``Engine``: a model ready for inference at a fixed set of batch sizes.

The contract every part of ``kiln.deploy`` shares (optimize builds engines, the repository
stores and loads them, the server and ``kiln bench`` call them):

- ``input_shape`` is the shape of one sample (no batch dim), ``input_dtype`` its dtype; an
  engine built for images with ``image=`` takes ``torch.uint8`` in NHWC and normalizes inside.
- ``batch_sizes`` are the sizes the engine was built for (sorted). A call with ``n`` samples
  pads up to the next size and returns ``n`` rows; more than the largest size is split.
- Calls are not thread-safe (CUDA graphs share their static buffers): one thread calls.
- Outputs are fresh tensors on ``device`` (never a graph's static buffer).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

Runner = Callable[[torch.Tensor], torch.Tensor]


@dataclass
class Engine:
    runners: dict[int, Runner]
    input_shape: tuple[int, ...]
    input_dtype: torch.dtype
    device: torch.device
    name: str = "model"
    info: dict[str, Any] = field(default_factory=dict)  # precision, passes, errors, ...
    # what ``kiln.deploy.optimize`` built it from (``kiln.deploy.save`` writes it); None: eager
    source: Any = field(default=None, repr=False)

    @property
    def batch_sizes(self) -> tuple[int, ...]:
        return tuple(sorted(self.runners))

    @property
    def max_batch_size(self) -> int:
        return max(self.runners)

    def bucket(self, n: int) -> int:
        """The batch size a call of ``n`` samples runs at (``n`` <= ``max_batch_size``)."""
        return next(size for size in self.batch_sizes if size >= n)

    def __call__(self, batch: torch.Tensor) -> torch.Tensor:
        self._check(batch)
        n = batch.shape[0]
        batch = batch.to(self.device, non_blocking=True)
        run = self.runners.get(n)
        if run is not None:  # a size it was built for: the batch-1 latency path, kept short
            return run(batch).clone()
        if n > self.max_batch_size:
            parts = batch.split(self.max_batch_size)
            return torch.cat([self(part) for part in parts])
        size = self.bucket(n)
        pad = batch.new_zeros((size - n, *self.input_shape))
        return self.runners[size](torch.cat([batch, pad]))[:n].clone()

    def _check(self, batch: torch.Tensor) -> None:
        if tuple(batch.shape[1:]) != self.input_shape or batch.dtype != self.input_dtype:
            raise ValueError(
                f"engine {self.name!r} takes batches of shape (N, "
                f"{', '.join(map(str, self.input_shape))}) and dtype {self.input_dtype}. "
                f"Received: shape {tuple(batch.shape)}, dtype {batch.dtype}."
            )
        if len(batch) == 0:
            raise ValueError(f"engine {self.name!r}: received an empty batch (N=0).")


def eager_engine(
    model: torch.nn.Module, example: torch.Tensor, batch_sizes: Sequence[int] = (1, 8, 64, 256)
) -> Engine:
    """The unoptimized reference: ``model`` in eval mode under ``inference_mode``."""
    model = model.eval()

    @torch.inference_mode()
    def run(batch: torch.Tensor) -> torch.Tensor:
        return model(batch)

    return Engine(
        runners=dict.fromkeys(sorted(set(batch_sizes)), run),
        input_shape=tuple(example.shape[1:]),
        input_dtype=example.dtype,
        device=example.device,
        info={"precision": "fp32", "passes": []},
    )
