"""What a study found, as plain data (for reports, plots and the dashboard)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from kiln.tune._pareto import hypervolume
from kiln.tune._space import Categorical
from kiln.tune._trial import TrialState

if TYPE_CHECKING:
    from kiln.tune._study import Study


def hypervolume_history(study: Study) -> list[float]:
    """Hypervolume of the feasible completed trials among the first i + 1 trials, for every i,
    against the study's reference point (its thresholds, else inferred from all trials)."""
    ref, front, out = study.reference_point(), [], []
    for trial in study.trials:
        ok = trial.state is TrialState.COMPLETED and study.is_feasible(trial.values)
        if ok:
            front.append(study.maximized(trial.values))
        out.append(hypervolume(np.stack(front), ref) if front else 0.0)
    return out


def importance(study: Study, objective: str | None = None, bins: int = 4) -> dict[str, float]:
    """How much of an objective's variance each parameter explains on its own (the correlation
    ratio: between-group variance over total, numeric parameters split into `bins` quantile
    groups, categorical ones by choice), over completed trials. Largest first; 0 to 1 each."""
    objective = objective or next(iter(study.objectives))
    if objective not in study.objectives:
        raise ValueError(f"objective must be one of {list(study.objectives)}. "
                         f"Received: {objective!r}")  # fmt: skip
    done = study.completed()
    y = np.array([t.values[objective] for t in done])
    scores: dict[str, float] = {}
    for name, param in study.space.params.items():
        have = [i for i, t in enumerate(done) if name in t.params]
        if len(have) < 2 or y[have].var() == 0:
            scores[name] = 0.0
            continue
        values = [done[i].params[name] for i in have]
        if isinstance(param, Categorical):
            groups: Any = np.array([param.choices.index(v) for v in values])
        else:
            x = np.array(values, dtype=float)
            edges = np.quantile(x, np.linspace(0, 1, bins + 1)[1:-1])
            groups = np.searchsorted(edges, x, side="right")
        sub = y[have]
        between = sum((groups == g).sum() * (sub[groups == g].mean() - sub.mean()) ** 2
                      for g in np.unique(groups))  # fmt: skip
        scores[name] = float(between / (sub.var() * len(sub)))
    return dict(sorted(scores.items(), key=lambda kv: -kv[1]))
