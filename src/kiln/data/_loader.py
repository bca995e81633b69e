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
- Sharded (``world_size`` > 1, one loader per process of a distributed run): every rank draws
  the same order; step ``i`` covers the global batch ``order[i*B*W : (i+1)*B*W]`` and rank
  ``r`` takes its ``r``-th slice of ``B``. The ranks together see exactly the batches of one
  process with batch ``B*W``; the last incomplete global batch is dropped, so that every rank
  takes the same number of steps (a rank with nothing to do would stall the others).
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
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        if not 0 <= rank < world_size:
            raise ValueError(
                f"rank must be in [0, world_size). Received: rank={rank}, world_size={world_size}."
            )
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
        self.rank, self.world_size = rank, world_size
        if world_size > 1 and num_samples < batch_size * world_size:
            raise ValueError(
                f"{num_samples} samples cannot fill one global batch of {world_size} ranks x "
                f"batch_size={batch_size}. Use a smaller batch_size or fewer processes."
            )

    def __len__(self) -> int:
        if self.world_size > 1:
            return self.num_samples // (self.batch_size * self.world_size)
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
        lo = (step * self.world_size + self.rank) * self.batch_size
        return lo, min(lo + self.batch_size, self.num_samples)

    @abc.abstractmethod
    def _batches(self, epoch: int, start_step: int) -> Iterator[Any]: ...

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(num_samples={self.num_samples}, batch_size="
            f"{self.batch_size}, steps={len(self)}, shuffle={self.shuffle}, "
            f"device={self.device}, seed={self.seed}, drop_last={self.drop_last})"
        )
