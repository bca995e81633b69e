"""The test problems: BoTorch's multi-objective functions, all minimized, with their reference
points; the hypervolume counts the noiseless values of the feasible points evaluated so far."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from kiln import tune


def _factories() -> dict[str, Callable[[], Any]]:
    from botorch.test_functions import multi_objective as mo

    return {
        "branin_currin": lambda: mo.BraninCurrin(),
        "zdt3": lambda: mo.ZDT3(dim=4),
        "dtlz2": lambda: mo.DTLZ2(dim=6, num_objectives=2),
        "c2dtlz2": lambda: mo.C2DTLZ2(dim=4, num_objectives=2),
        "noisy_branin_currin": lambda: mo.BraninCurrin(noise_std=[5.0, 0.5]),
    }


NAMES = ["branin_currin", "zdt3", "dtlz2", "c2dtlz2", "noisy_branin_currin"]


@dataclass
class Evaluation:
    observed: np.ndarray  # what the sampler is told (noisy where the problem is)
    true: np.ndarray  # what the hypervolume counts
    slack: float | None  # constrained problems: feasible when >= 0
    feasible: bool


class Problem:
    """`seed` draws the noise of a noisy problem from a generator of its own, so a run's noise
    depends on its seed alone, not on what ran before it in the process (samplers that use
    torch's global generator, other runs of a worker)."""

    def __init__(self, name: str, seed: int = 0) -> None:
        if name not in NAMES:
            raise ValueError(f"Unknown problem {name!r}; known: {', '.join(NAMES)}")
        self.name, self.f = name, _factories()[name]()
        self._noise = torch.Generator().manual_seed(seed)
        self.dim, self.m = int(self.f.dim), int(self.f.num_objectives)
        self.bounds = self.f.bounds.double().T.tolist()  # [(lo, hi)] per input
        self.ref = self.f.ref_point.double().numpy()
        self.constrained = hasattr(self.f, "evaluate_slack")
        self.max_hv = float(self.f.max_hv)

    def evaluate(self, x: list[float]) -> Evaluation:
        xt = torch.tensor([x], dtype=torch.float64)
        true_t = self.f.evaluate_true(xt)[0]
        std = self.f.noise_std
        noise = 0.0 if std is None else torch.as_tensor(std, dtype=torch.float64) * torch.randn(
            true_t.shape, dtype=torch.float64, generator=self._noise
        )  # fmt: skip
        observed, true = (true_t + noise).numpy(), true_t.numpy()
        slack = float(self.f.evaluate_slack(xt).min()) if self.constrained else None
        return Evaluation(observed, true, slack, slack is None or slack >= 0)

    def hypervolume(self, points: list[np.ndarray]) -> float:
        return tune.hypervolume(-np.stack(points), -self.ref) if points else 0.0


class HypervolumeTrace:
    """Hypervolume after each evaluation; recomputed only when the front changes."""

    def __init__(self, problem: Problem) -> None:
        self.problem, self.front, self.values = problem, list[np.ndarray](), list[float]()

    def add(self, ev: Evaluation) -> float:
        hv = self.values[-1] if self.values else 0.0
        if ev.feasible and not any(np.all(p <= ev.true) for p in self.front):
            self.front = [p for p in self.front if not np.all(ev.true <= p)] + [ev.true]
            hv = self.problem.hypervolume(self.front)
        self.values.append(hv)
        return hv
