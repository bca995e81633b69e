"""Batches assembled on the host and streamed to the device."""

from __future__ import annotations

import functools
import os
import pickle
import warnings
import weakref
from collections.abc import Callable, Iterator, Sized
from typing import Any

import torch
from torch.utils._pytree import TreeSpec, tree_flatten, tree_unflatten
from torch.utils.data import DataLoader, Dataset, IterableDataset, Sampler, default_collate

from kiln.data._loader import Loader
from kiln.data._tree import FlatData, flatten_data


class StreamingLoader(Loader):
    """A ``torch.utils.data.DataLoader`` with kiln's deterministic ``(seed, epoch)`` order.

    ``data`` is a map-style ``torch.utils.data.Dataset`` (each batch is ``collate_fn`` of its
    samples, torch's ``default_collate`` unless given) or a pytree of tensors/arrays kept in
    host memory (each batch is gathered in one indexing op, then transferred). Host batches are
    pinned when the target is CUDA and copied with ``non_blocking=True``.

    ``num_workers`` defaults to ``min(4, cpus - 1)`` for a Dataset and 0 for in-memory arrays
    (gathering rows is already a single vectorized op). Workers persist across epochs.
    """

    def __init__(
        self,
        data: Dataset | Any,
        batch_size: int,
        *,
        shuffle: bool = False,
        device: torch.device | str | None = None,
        seed: int = 0,
        drop_last: bool = False,
        rank: int = 0,
        world_size: int = 1,
        num_workers: int | None = None,
        collate_fn: Callable[[list[Any]], Any] | None = None,
    ) -> None:
        is_dataset = isinstance(data, Dataset)
        if is_dataset:
            num_samples = _dataset_len(data)
        else:
            flat = flatten_data(data)
            num_samples, data = flat.num_samples, _HostBatches(flat)
        super().__init__(
            num_samples,
            batch_size,
            shuffle=shuffle,
            device=device,
            seed=seed,
            drop_last=drop_last,
            rank=rank,
            world_size=world_size,
        )
        if num_workers is None:
            num_workers = min(4, max(0, _cpu_count() - 1)) if is_dataset else 0
        self.num_workers = num_workers
        self._sampler = _EpochSampler(self, as_lists=is_dataset)
        # Batches travel as (leaves, pickled treespec) and are rebuilt here: torch's collate
        # and convert functions turn tuples into lists, and the structure must survive.
        how: dict[str, Any] = (
            dict(batch_sampler=self._sampler, collate_fn=_FlatCollate(collate_fn))
            if is_dataset
            else dict(sampler=self._sampler, batch_size=None, collate_fn=_keep)
        )
        self._loader = DataLoader(
            data,
            num_workers=num_workers,
            pin_memory=self.device.type == "cuda",
            persistent_workers=num_workers > 0,
            **how,
        )

    def _batches(self, epoch: int, start_step: int) -> Iterator[Any]:
        self._sampler.epoch, self._sampler.start_step = epoch, start_step
        for leaves, spec in self._loader:
            yield tree_unflatten([self._to_device(leaf) for leaf in leaves], _load_spec(spec))

    def _to_device(self, leaf: Any) -> Any:
        if isinstance(leaf, torch.Tensor):
            return leaf.to(self.device, non_blocking=True)
        return leaf


class _EpochSampler(Sampler):
    """Yields each step's sample indices (a list, or a tensor/slice for in-memory data)."""

    def __init__(self, loader: Loader, *, as_lists: bool) -> None:
        # A weak reference: a loader <-> sampler cycle would leave the DataLoader's workers to
        # the cyclic GC, which tears the queues down first and then waits 5 s per worker.
        self.loader, self.as_lists = weakref.proxy(loader), as_lists
        self.epoch, self.start_step = 0, 0

    def __len__(self) -> int:
        return len(self.loader) - self.start_step

    def __iter__(self) -> Iterator[Any]:
        order = self.loader.order(self.epoch)
        for step in range(self.start_step, len(self.loader)):
            lo, hi = self.loader.bounds(step)
            if self.as_lists:  # for a Dataset's batch_sampler
                yield list(range(lo, hi)) if order is None else order[lo:hi].tolist()
            else:  # one indexing op over in-memory tensors
                yield slice(lo, hi) if order is None else order[lo:hi]


class _HostBatches(Dataset):
    """In-memory data indexed by a whole batch's key at once."""

    def __init__(self, flat: FlatData) -> None:
        self.flat, self.spec = flat, pickle.dumps(flat.spec)

    def __len__(self) -> int:
        return self.flat.num_samples

    def __getitem__(self, key: slice | torch.Tensor) -> tuple[list, bytes]:
        return [None if t is None else t[key] for t in self.flat.leaves], self.spec


class _FlatCollate:
    """Collates samples leaf by leaf (or with the user's ``collate_fn``), returns it flat."""

    def __init__(self, collate_fn: Callable[[list[Any]], Any] | None) -> None:
        self.collate_fn = collate_fn

    def __call__(self, samples: list[Any]) -> tuple[list, bytes]:
        if self.collate_fn is not None:
            leaves, spec = tree_flatten(self.collate_fn(samples))
            return leaves, pickle.dumps(spec)
        flat = [tree_flatten(sample) for sample in samples]
        spec = flat[0][1]
        for i, (_, other) in enumerate(flat):
            if other != spec:
                raise ValueError(
                    f"every sample of the Dataset must have the same structure. Sample 0 of "
                    f"this batch is {spec}, sample {i} is {other}. Return the same nesting from "
                    f"__getitem__, or pass collate_fn=."
                )
        columns = zip(*(leaves for leaves, _ in flat))
        return [default_collate(list(column)) for column in columns], pickle.dumps(spec)


@functools.lru_cache(maxsize=64)
def _load_spec(blob: bytes) -> TreeSpec:
    with warnings.catch_warnings():  # torch 2.13 warns about its own LeafSpec when unpickling
        warnings.simplefilter("ignore", FutureWarning)
        return pickle.loads(blob)


def _keep(batch: Any) -> Any:
    return batch


def _dataset_len(dataset: Dataset) -> int:
    if isinstance(dataset, IterableDataset) or not isinstance(dataset, Sized):
        raise TypeError(
            f"StreamingLoader needs a map-style Dataset with __len__ and __getitem__ (it "
            f"controls the sample order). Received: {type(dataset).__name__}."
        )
    if len(dataset) == 0:
        raise ValueError(f"the Dataset has 0 samples. Received: {dataset!r}.")
    return len(dataset)


def _cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1
