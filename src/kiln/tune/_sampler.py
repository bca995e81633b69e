"""The sampler interface, and the two model-free samplers: `Random` and `Sobol`."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from kiln.tune._space import Space
from kiln.tune._trial import Trial, TrialState

if TYPE_CHECKING:
    from kiln.tune._study import Study

_MAX_TRIES = 1000


class BaseSampler:
    """Suggests parameters from a study's history. A new sampler is one subclass of this.

    Contract (tests/tune/test_samplers.py runs one suite against every sampler):
    - `suggest(study, n)` returns `n` dicts of parameters that `study.space.validate` accepts:
      in bounds, of the right types, only active conditional parameters, every linear
      constraint satisfied.
    - It reads `study.trials` (all states) and may read `study.objectives`,
      `study.constraints` and `study.thresholds`; it never writes to the study.
    - It never repeats the parameters of a pending or running trial, nor two of its own `n`,
      unless the space has fewer distinct points than that (a finite, exhausted space).
    - Deterministic under a seed: the same `seed`, history and `n` give the same suggestions,
      whatever threads or processes produced the history.
    - Thread safety: not required; `Study` calls `suggest` under its lock. A sampler may keep
      caches, but must not depend on them for correctness (a resumed study starts without).
    - May raise `ValueError` (the space admits no feasible point) and `ImportError` (a missing
      optional dependency, with the install command); nothing else is expected.
    """

    def __init__(self, seed: int | None = None) -> None:
        self.seed = int(np.random.default_rng().integers(2**31)) if seed is None else int(seed)

    def suggest(self, study: Study, n: int = 1) -> list[dict[str, Any]]:
        raise NotImplementedError

    def to_json(self) -> dict[str, Any]:
        return {"type": type(self).__name__, "seed": self.seed}

    # Helpers shared by implementations.
    @staticmethod
    def busy(trials: Sequence[Trial]) -> list[Trial]:
        return [t for t in trials if t.state in (TrialState.PENDING, TrialState.RUNNING)]

    def _unique(self, space: Space, taken: list[dict[str, Any]], draw: Any) -> dict[str, Any]:
        """The first draw() that is feasible and not in `taken` (or any feasible one)."""
        fallback = None
        for _ in range(_MAX_TRIES):
            params = space.decode(draw())
            if not space.feasible(params):
                continue
            if params not in taken:
                return params
            fallback = fallback or params
        if fallback is None:
            raise ValueError(
                f"Found no point satisfying the linear constraints {space.linear_constraints} "
                f"in {_MAX_TRIES} draws; check that they admit a point inside the bounds."
            )
        return fallback


class Random(BaseSampler):
    """Independent uniform draws in the unit cube (log-uniform for `log=True` parameters)."""

    def suggest(self, study: Study, n: int = 1) -> list[dict[str, Any]]:
        trials = study.trials
        rng = np.random.default_rng([self.seed, len(trials)])
        taken = [t.params for t in self.busy(trials)]
        out: list[dict[str, Any]] = []
        for _ in range(n):
            out.append(self._unique(study.space, taken + out, lambda: rng.random(study.space.dims)))
        return out


class Sobol(BaseSampler):
    """A scrambled Sobol sequence: trial i gets the i-th point (skipping infeasible ones), so
    the first 2^k trials cover the cube evenly."""

    def suggest(self, study: Study, n: int = 1) -> list[dict[str, Any]]:
        trials = study.trials
        return self.points(study.space, len(trials), n, [t.params for t in self.busy(trials)])

    def points(
        self, space: Space, start: int, n: int, taken: list[dict[str, Any]]
    ) -> list[dict[str, Any]]:
        if space.dims == 0:  # fixed values only: the one point there is
            return [self._unique(space, taken, lambda: np.zeros(0)) for _ in range(n)]
        engine = torch.quasirandom.SobolEngine(space.dims, scramble=True, seed=self.seed)
        engine.fast_forward(start)
        out: list[dict[str, Any]] = []
        for _ in range(n):
            out.append(self._unique(space, taken + out, lambda: engine.draw(1)[0].double().numpy()))
        return out
