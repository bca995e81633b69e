"""Turn what users pass to fit/evaluate into one pytree ``(x, y[, sample_weight])``."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.utils._pytree import tree_flatten, tree_map


def assemble(
    x: Any, y: Any, sample_weight: Any, class_weight: dict[int, float] | None
) -> tuple[Any, Any]:
    """Return ``(data, targets)``: the loader's pytree and the targets for one-time checks."""
    if x is None:
        raise ValueError("fit/evaluate need data: pass x (and y), e.g. model.fit(x, y).")
    if isinstance(x, torch.utils.data.Dataset):
        if y is not None:
            raise ValueError("When x is a torch Dataset it yields (x, y) itself; do not pass y.")
        return x, None
    if y is None:
        raise ValueError("Pass targets y with x (model.fit(x, y)), or a Dataset of (x, y) pairs.")
    x, y = tree_map(_as_tensor, x), tree_map(_as_tensor, y)
    y = tree_map(_labels_as_long, y)
    weights = _weights(y, sample_weight, class_weight)
    return ((x, y) if weights is None else (x, y, weights)), y


def split_tail(data: Any, fraction: float) -> tuple[Any, Any]:
    """Keras's validation_split: the last ``fraction`` of the samples, taken before shuffling."""
    if not 0.0 < fraction < 1.0:
        raise ValueError(
            f"validation_split must be in (0, 1); received validation_split={fraction}."
        )
    if isinstance(data, torch.utils.data.Dataset):
        raise ValueError("validation_split needs arrays; for a Dataset pass validation_data.")
    n = tree_flatten(data)[0][0].shape[0]
    cut = n - round(n * fraction)
    if cut <= 0 or cut >= n:
        raise ValueError(f"validation_split={fraction} of {n} samples leaves an empty set.")
    return tree_map(lambda t: t[:cut], data), tree_map(lambda t: t[cut:], data)


def _as_tensor(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        tensor = torch.from_numpy(np.ascontiguousarray(value))
        return tensor.float() if tensor.dtype == torch.float64 else tensor
    if isinstance(value, (list, float, int)) and not isinstance(value, bool):
        return torch.as_tensor(value)
    return value


def _labels_as_long(t: Any) -> Any:
    is_int = isinstance(t, Tensor) and not t.is_floating_point() and t.dtype != torch.bool
    return t.long() if is_int and t.dtype != torch.int64 else t


def _weights(y: Any, sample_weight: Any, class_weight: dict[int, float] | None) -> Tensor | None:
    weights = None if sample_weight is None else _as_tensor(sample_weight).float().reshape(-1)
    if class_weight:
        if not isinstance(y, Tensor):
            raise ValueError("class_weight needs a single output; use sample_weight for several.")
        labels = y.long().reshape(-1) if y.dim() <= 1 or y.shape[1] == 1 else y.argmax(1)
        table = torch.ones(int(labels.max()) + 1)
        for cls, w in class_weight.items():
            if not 0 <= int(cls) < len(table):
                raise ValueError(
                    f"class_weight has class {cls}, but labels are in [0, {len(table) - 1}]."
                )
            table[int(cls)] = float(w)
        per_sample = table[labels]
        weights = per_sample if weights is None else weights * per_sample
    return weights
