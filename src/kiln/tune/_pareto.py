"""Pareto dominance, non-dominated sorting, crowding distance and hypervolume.

All functions take an `(n, m)` array of objective vectors where larger is better in every column
(`Study` flips the sign of "min" objectives before it calls them).
"""

from __future__ import annotations

import numpy as np


def pareto_mask(y: np.ndarray) -> np.ndarray:
    """True for rows no other row dominates (>= everywhere and > somewhere). Duplicates stay."""
    y = np.asarray(y, dtype=float).reshape(len(y), -1)
    ge = (y[:, None, :] >= y[None, :, :]).all(-1)
    gt = (y[:, None, :] > y[None, :, :]).any(-1)
    return np.asarray(~(ge & gt).any(0))


def nondominated_ranks(y: np.ndarray) -> np.ndarray:
    """Front index of every row: 0 for the Pareto front, 1 for the front once it is removed..."""
    y = np.asarray(y, dtype=float).reshape(len(y), -1)
    ranks = np.full(len(y), -1)
    left = np.arange(len(y))
    front = 0
    while left.size:
        mask = pareto_mask(y[left])
        ranks[left[mask]] = front
        left, front = left[~mask], front + 1
    return ranks


def crowding_distance(y: np.ndarray) -> np.ndarray:
    """NSGA-II's crowding distance within one front: infinite at the extremes, larger = lonelier."""
    y = np.asarray(y, dtype=float).reshape(len(y), -1)
    n, m = y.shape
    dist = np.zeros(n)
    if n <= 2:
        return np.full(n, np.inf)
    for j in range(m):
        order = np.argsort(y[:, j], kind="stable")
        span = y[order[-1], j] - y[order[0], j]
        dist[order[[0, -1]]] = np.inf
        if span > 0:
            dist[order[1:-1]] += (y[order[2:], j] - y[order[:-2], j]) / span
    return dist


def hypervolume(y: np.ndarray, reference: np.ndarray) -> float:
    """Volume dominated by the rows of `y` and bounded below by `reference`.

    Exact sweep in 1-D and 2-D; BoTorch's exact algorithm beyond (needs the `tune` extra)."""
    y = np.asarray(y, dtype=float).reshape(-1, len(reference))
    ref = np.asarray(reference, dtype=float)
    y = y[(y > ref).all(1)]
    if len(y) == 0:
        return 0.0
    y = y[pareto_mask(y)]
    if y.shape[1] == 1:
        return float(y.max() - ref[0])
    if y.shape[1] == 2:
        y = y[np.argsort(-y[:, 0])]
        volume, best_y = 0.0, ref[1]
        for a, b in y:
            if b > best_y:
                volume += (a - ref[0]) * (b - best_y)
                best_y = b
        return float(volume)
    import torch

    from kiln.tune._bayes import _require_botorch

    _require_botorch()
    from botorch.utils.multi_objective.hypervolume import Hypervolume

    hv = Hypervolume(torch.as_tensor(ref, dtype=torch.float64))
    return float(hv.compute(torch.as_tensor(y, dtype=torch.float64)))


def hypervolume_contributions(y: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Per row of `y`: the hypervolume lost without it (0 for dominated rows and rows that do
    not beat `reference`)."""
    y = np.asarray(y, dtype=float).reshape(-1, len(reference))
    total = hypervolume(y, reference)
    return np.array([total - hypervolume(np.delete(y, i, axis=0), reference)
                     for i in range(len(y))])  # fmt: skip
