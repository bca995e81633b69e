"""The loader contract shared by ``DeviceLoader`` and ``StreamingLoader``.

Contract (what the trainer relies on):

- ``len(loader)`` is the number of steps (batches) per epoch; ``loader.num_samples`` the
  number of samples.
- ``loader.epoch(e, start_step=k)`` returns an iterator over the batches of epoch ``e`` from
  step ``k`` on. Each batch has the nested structure of the input data (for a ``Dataset``:
  what its collate function returns), with tensors on ``loader.device``.
- The sample order of an epoch is a pure function of ``(seed, epoch)``: with ``shuffle`` it
  is ``torch.randperm`` from a CPU ``torch.Generator`` seeded with
  ``seed * 1_000_003 + epoch``; without, it is sequential. Batches are consecutive slices of
  that order, the last one smaller unless ``drop_last``. So ``epoch(e, start_step=k)`` yields
  exactly the tail of ``epoch(e)`` (exact resume), on any device and with any loader.
- One epoch iterator at a time per loader.
"""

from __future__ import annotations

import abc
import math
from collections.abc import Iterator
from typing import Any

import torch

_SEED_STRIDE = 1_000_003  # distinct (seed, epoch) give distinct seeds while epoch < stride


def epoch_order(num_samples: int, seed: int, epoch: int, shuffle: bool) -> torch.Tensor | None:
    """The sample order of ``epoch`` as a CPU int64 tensor, or None for sequential order."""
    if not shuffle:
        return None
    generator = torch.Generator().manual_seed((seed * _SEED_STRIDE + epoch) % 2**63)
    return torch.randperm(num_samples, generator=generator)


class Loader(abc.ABC):
    """Base class: batch arithmetic, argument checks and the ``(seed, epoch)`` order."""

    def __init__(
        self,
        num_samples: int,
        batch_size: int,
        *,
        shuffle: bool,
        device: torch.device | str | None,
        seed: int,
        drop_last: bool,
    ) -> None:
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive int. Received: {batch_size!r}.")
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise ValueError(f"seed must be an int. Received: {seed!r}.")
        if drop_last and batch_size > num_samples:
            raise ValueError(
                f"drop_last=True with batch_size={batch_size} > num_samples={num_samples} "
                f"leaves no batch. Use a smaller batch_size or drop_last=False."
            )
        self.num_samples = num_samples
        self.batch_size = batch_size
        self.shuffle = bool(shuffle)
        self.device = torch.device(device if device is not None else "cpu")
        self.seed = seed
        self.drop_last = bool(drop_last)

    def __len__(self) -> int:
        if self.drop_last:
            return self.num_samples // self.batch_size
        return math.ceil(self.num_samples / self.batch_size)

    def epoch(self, epoch: int, start_step: int = 0) -> Iterator[Any]:
        """The batches of ``epoch``, skipping the first ``start_step`` (to resume)."""
        if isinstance(epoch, bool) or not isinstance(epoch, int) or epoch < 0:
            raise ValueError(f"epoch must be an int >= 0. Received: {epoch!r}.")
        if not isinstance(start_step, int) or not 0 <= start_step <= len(self):
            raise ValueError(
                f"start_step must be an int in [0, {len(self)}] (steps per epoch). "
                f"Received: {start_step!r}."
            )
        return self._batches(epoch, start_step)

    def order(self, epoch: int) -> torch.Tensor | None:
        return epoch_order(self.num_samples, self.seed, epoch, self.shuffle)

    def bounds(self, step: int) -> tuple[int, int]:
        """``[lo, hi)`` positions of batch ``step`` within the epoch's order."""
        lo = step * self.batch_size
        return lo, min(lo + self.batch_size, self.num_samples)

    @abc.abstractmethod
    def _batches(self, epoch: int, start_step: int) -> Iterator[Any]: ...

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(num_samples={self.num_samples}, batch_size="
            f"{self.batch_size}, steps={len(self)}, shuffle={self.shuffle}, "
            f"device={self.device}, seed={self.seed}, drop_last={self.drop_last})"
        )
