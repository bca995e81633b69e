"""Batches cut from data that lives on the target device."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch

from kiln.data._loader import Loader
from kiln.data._tree import flatten_data


class DeviceLoader(Loader):
    """Moves all of ``data`` to ``device`` once, then batches it there.

    ``data`` is a pytree of tensors/numpy arrays (see ``kiln.data._tree``: float64 numpy becomes
    float32). Each epoch's permutation is drawn on the CPU (so the order never depends on the
    device) and copied to the device once per epoch; batches are ``index_select`` on the
    device, or plain slices (views: do not modify them in place) without shuffling. Nothing
    here waits for the device, so batches are produced without a host sync.
    """

    def __init__(
        self,
        data: Any,
        batch_size: int,
        *,
        shuffle: bool = False,
        device: torch.device | str | None = None,
        seed: int = 0,
        drop_last: bool = False,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        flat = flatten_data(data)
        super().__init__(
            flat.num_samples,
            batch_size,
            shuffle=shuffle,
            device=device,
            seed=seed,
            drop_last=drop_last,
            rank=rank,
            world_size=world_size,
        )
        flat.leaves = [None if t is None else t.to(self.device) for t in flat.leaves]
        self._flat = flat

    def epoch_indices(self, epoch: int, start_step: int = 0) -> Iterator[torch.Tensor]:
        """The rows of each batch ``epoch(epoch, start_step)`` yields, as int64 index tensors on
        the device, for a step that gathers its batch itself (``gather``): inside a CUDA graph,
        a step is then one replay, with no gathers and copies around it."""
        self.epoch(epoch, start_step)  # its argument checks; the generator itself goes unused
        order = self.order(epoch)
        if order is None:
            order = torch.arange(self.num_samples)
        order = order.to(self.device, non_blocking=True)
        for step in range(start_step, len(self)):
            lo, hi = self.bounds(step)
            yield order[lo:hi]

    def gather(self, idx: torch.Tensor) -> Any:
        """The batch of rows ``idx`` (as ``epoch`` would yield it)."""
        leaves = self._flat.leaves
        return self._flat.unflatten([None if t is None else t.index_select(0, idx) for t in leaves])

    def _batches(self, epoch: int, start_step: int) -> Iterator[Any]:
        order = self.order(epoch)
        if order is not None:
            order = order.to(self.device, non_blocking=True)
        leaves = self._flat.leaves
        for step in range(start_step, len(self)):
            lo, hi = self.bounds(step)
            if order is None:
                batch = [None if t is None else t[lo:hi] for t in leaves]
            else:
                idx = order[lo:hi]
                batch = [None if t is None else t.index_select(0, idx) for t in leaves]
            yield self._flat.unflatten(batch)
