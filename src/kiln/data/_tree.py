"""In-memory data as a pytree of arrays that share their first (sample) dimension.

``data`` is a tensor or numpy array, or a tuple/list/dict nesting them, e.g. ``(x, y)``,
``(x, y, sample_weight)`` or ``({"img": a, "meta": b}, (y1, y2))``. ``None`` leaves are kept
as ``None`` in every batch (e.g. ``(x, y, None)`` for "no sample weights").

numpy arrays become tensors with ``torch.from_numpy`` (no copy), except that float64 becomes
float32 (a copy: float64 is rarely what a model wants) and read-only, non-native-endian or
non-contiguous arrays are copied first.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch.utils._pytree import TreeSpec, keystr, tree_flatten_with_path, tree_unflatten


@dataclass
class FlatData:
    """``data`` flattened: tensor (or None) leaves, their paths, the structure, sample count."""

    leaves: list[torch.Tensor | None]
    paths: list[str]
    spec: TreeSpec
    num_samples: int

    def unflatten(self, leaves: list[torch.Tensor | None]) -> Any:
        return tree_unflatten(leaves, self.spec)


def flatten_data(data: Any) -> FlatData:
    """Flatten, convert and validate ``data``; raise naming the offending leaf's path."""
    pairs, spec = tree_flatten_with_path(data)
    paths = [f"data{keystr(path)}" for path, _ in pairs]
    leaves = [_as_tensor(leaf, p) for (_, leaf), p in zip(pairs, paths)]
    lengths = {p: len(t) for p, t in zip(paths, leaves) if t is not None}
    if not lengths:
        raise ValueError(
            f"data must hold at least one tensor or numpy array. Received: {_short(data)}."
        )
    if len(set(lengths.values())) > 1:
        listing = ", ".join(f"{p}: {n}" for p, n in lengths.items())
        raise ValueError(
            f"every array in data must have the same first (sample) dimension. "
            f"Received lengths {listing}. Make them equal (one row per sample)."
        )
    num_samples = next(iter(lengths.values()))
    if num_samples == 0:
        raise ValueError(f"data has 0 samples (first dimension 0 in {', '.join(lengths)}).")
    return FlatData(leaves, paths, spec, num_samples)


def data_nbytes(data: Any) -> int:
    """Bytes ``data`` will take as tensors (float64 numpy counted as float32), unconverted."""
    pairs, _ = tree_flatten_with_path(data)
    total = 0
    for _, leaf in pairs:
        if isinstance(leaf, torch.Tensor):
            total += leaf.numel() * leaf.element_size()
        elif isinstance(leaf, np.ndarray):
            total += leaf.size * (4 if leaf.dtype == np.float64 else leaf.dtype.itemsize)
    return total


def _as_tensor(leaf: Any, path: str) -> torch.Tensor | None:
    if leaf is None:
        return None
    if isinstance(leaf, np.ndarray):
        leaf = _from_numpy(leaf, path)
    if not isinstance(leaf, torch.Tensor):
        raise TypeError(
            f"every leaf of data must be a torch.Tensor, a numpy array or None. "
            f"Received {path} of type {type(leaf).__name__}. Convert it, e.g. np.asarray(...)."
        )
    if leaf.ndim == 0:
        raise ValueError(
            f"every array in data needs a first (sample) dimension. Received {path}, a scalar "
            f"(shape ()). Give it shape (num_samples, ...)."
        )
    return leaf.detach()


def _from_numpy(array: np.ndarray, path: str) -> torch.Tensor:
    if array.dtype == np.float64:
        array = array.astype(np.float32)
    if not array.dtype.isnative:
        array = array.astype(array.dtype.newbyteorder("="))
    if not array.flags.writeable or not array.flags.c_contiguous:
        array = np.array(array, order="C")
    try:
        return torch.from_numpy(array)
    except TypeError as err:
        raise TypeError(f"{path}: numpy dtype {array.dtype} has no torch equivalent.") from err


def _short(data: Any) -> str:
    text = repr(data)
    return text if len(text) < 80 else text[:77] + "..."
