"""Early stopping of trials from their intermediate values: `BasePruner` and multi-objective
asynchronous successive halving."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import numpy as np

from kiln.tune._pareto import crowding_distance, nondominated_ranks
from kiln.tune._trial import Trial

if TYPE_CHECKING:
    from kiln.tune._study import Study


class BasePruner:
    """Decides, each time a trial reports, whether it should stop.

    Contract: `should_prune(study, trial, step)` is called under the study's lock, after
    `trial.intermediate[step]` is stored; it reads `study.trials` and the trial, writes nothing,
    and returns a bool. It must not raise for trials with missing or partial reports (it then
    keeps the trial running)."""

    def should_prune(self, study: Study, trial: Trial, step: int) -> bool:
        raise NotImplementedError

    def to_json(self) -> dict[str, Any]:
        return {"type": type(self).__name__}


class SuccessiveHalving(BasePruner):
    """Asynchronous successive halving for one or many objectives.

    Rungs sit at steps `min_step * reduction**k`. When a trial first reports at or past a rung,
    it is ranked against every trial that reached that rung before it, by non-dominated sorting
    of their objective values there (crowding distance breaks ties within a front, as in
    NSGA-II). It keeps running if it is in the best `1/reduction` of them or on the first
    (non-dominated) front; otherwise it is pruned. Nothing is pruned at a rung that fewer than
    `reduction` trials have reached.

    `max_step` is the last step a trial reports (its epochs, say): rungs sit only below it, so
    a trial that has already finished training is never stopped for nothing."""

    def __init__(self, min_step: int = 1, reduction: int = 3, max_step: int | None = None) -> None:
        if min_step < 1 or reduction < 2 or (max_step is not None and max_step <= min_step):
            raise ValueError(
                f"SuccessiveHalving needs min_step >= 1, reduction >= 2 and max_step (if given) "
                f"> min_step. Received: min_step={min_step}, reduction={reduction}, "
                f"max_step={max_step}"
            )
        self.min_step, self.reduction = int(min_step), int(reduction)
        self.max_step = None if max_step is None else int(max_step)

    def to_json(self) -> dict[str, Any]:
        bound = {"max_step": self.max_step} if self.max_step is not None else {}
        return {"type": "SuccessiveHalving", "min_step": self.min_step,
                "reduction": self.reduction, **bound}  # fmt: skip

    def rung_step(self, rung: int) -> int:
        return self.min_step * self.reduction**rung

    def _crossed(self, trial: Trial, step: int) -> list[int]:
        """Rungs that `step` is the first report at or past."""
        earlier = [s for s in trial.intermediate if s < step]
        last = max(earlier, default=-1)
        rungs, r = [], 0
        while self.rung_step(r) <= step:
            below_end = self.max_step is None or self.rung_step(r) < self.max_step
            if self.rung_step(r) > last and below_end:
                rungs.append(r)
            r += 1
        return rungs

    def _value_at(self, study: Study, trial: Trial, rung: int) -> np.ndarray | None:
        steps = sorted(s for s in trial.intermediate if s >= self.rung_step(rung))
        if not steps:
            return None
        values = trial.intermediate[steps[0]]
        if any(name not in values for name in study.objectives):
            return None
        return study.maximized(values)

    def should_prune(self, study: Study, trial: Trial, step: int) -> bool:
        for rung in self._crossed(trial, step):
            mine = self._value_at(study, trial, rung)
            if mine is None:
                continue
            others = [t for t in study.trials if t.number != trial.number]
            rows = [v for t in others if (v := self._value_at(study, t, rung)) is not None]
            y = np.array([mine, *rows])
            if len(y) < self.reduction:
                continue
            ranks = nondominated_ranks(y)
            crowd = np.zeros(len(y))
            for front in np.unique(ranks):
                crowd[ranks == front] = crowding_distance(y[ranks == front])
            order = sorted(range(len(y)), key=lambda i: (ranks[i], -crowd[i], i))
            keep = math.ceil(len(y) / self.reduction)
            if ranks[0] > 0 and 0 not in order[:keep]:
                return True
        return False
