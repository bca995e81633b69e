"""`TailWarp`: a monotone map of objective values that log-compresses their worse half.

Objectives often have a long tail of bad values (a diverged run's loss, Branin's 300 next to
its 0.4). A GP fitted on them spends its flexibility on that tail and, standardized, sees the
good values as one flat region. The Bayes sampler fits its models on warped values instead and
maps posterior samples back with `inverse`, so acquisitions (hypervolumes, improvements,
reference points) stay in the user's units."""

from __future__ import annotations

import numpy as np
import torch


class TailWarp:
    """Per column of `y` (maximized: larger is better): standardize to z, then keep z above
    the column's median m and send z below it to m - log(1 + m - z). Continuous with slope 1
    at m, strictly increasing, and exactly invertible."""

    def __init__(self, y: np.ndarray) -> None:
        self.mean, self.std = y.mean(0), y.std(0)
        self.std = np.where(self.std > 0, self.std, 1.0)
        self.median = np.median((y - self.mean) / self.std, axis=0)

    def __call__(self, y: np.ndarray) -> np.ndarray:
        z, m = (y - self.mean) / self.std, self.median
        return np.where(z >= m, z, m - np.log1p(np.maximum(m - z, 0.0)))

    def inverse(self, w: torch.Tensor) -> torch.Tensor:
        """Values from warped ones (last dimension: the columns), differentiably."""
        m, mean, std = (torch.as_tensor(a, dtype=w.dtype, device=w.device)
                        for a in (self.median, self.mean, self.std))  # fmt: skip
        # the clamp keeps far-out posterior samples finite; they are hopeless points anyway
        z = torch.where(w >= m, w, m - torch.expm1((m - w).clamp(0.0, 50.0)))
        return z * std + mean
