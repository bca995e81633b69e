"""The Bayes sampler's models and acquisition functions (BoTorch), on tensors only: fitting,
reference points, baseline pruning, and the probability of a region for feasibility first."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch

# Baseline pruning estimates from posterior samples which observed points may still be on the
# front; BoTorch's default of 2048 samples costs more than the rest of a suggestion at 200 trials.
_PRUNE_SAMPLES = 256


Hypers = dict[str, list[Any]]  # one fitted GP's raw hyperparameters by name, JSON-ready


def fit_gp(x: torch.Tensor, y: torch.Tensor) -> Any:
    """One GP per column of `y` (n x k), fitted from BoTorch's defaults (see `fit_gps`)."""
    return fit_gps(x, y)[0]


def fit_gps(
    x: torch.Tensor, y: torch.Tensor, start: list[Hypers] | None = None
) -> tuple[Any, list[Hypers]]:
    """One GP per column of `y` (n x k), each fitted alone (outcomes standardized, BoTorch's
    dimension-scaled priors), then stacked into one batched model: fitting the columns apart
    converges in fewer steps, and the batched model evaluates the acquisition faster.

    `start`: per column, hyperparameters to start the fit from (an earlier fit's, as returned
    here), which takes a fraction of the steps of a fit from the defaults when the data grew by
    a trial or two (BraninCurrin, 200 trials: 0.02-0.04 s instead of 0.12-0.24 s a column, to
    the same likelihood). Returns the model and each column's fitted hyperparameters."""
    from botorch.models import SingleTaskGP
    from botorch.models.transforms import Standardize

    columns = range(y.shape[-1])
    starts = start if start is not None and len(start) == len(columns) else [None] * len(columns)
    singles = [_fit(x, y[:, j : j + 1], starts[j]) for j in columns]
    hypers = [{n: p.detach().cpu().tolist() for n, p in s.named_parameters()} for s in singles]
    if len(singles) == 1:
        return singles[0], hypers
    gp = SingleTaskGP(x, y, outcome_transform=Standardize(y.shape[-1]))
    parts = [dict(s.named_parameters()) for s in singles]
    with torch.no_grad():
        for name, param in gp.named_parameters():
            param.copy_(torch.stack([p[name] for p in parts]).reshape(param.shape))
    return gp.eval(), hypers


def _fit(x: torch.Tensor, y: torch.Tensor, start: Hypers | None = None) -> Any:
    from botorch.fit import fit_gpytorch_mll
    from botorch.models import SingleTaskGP
    from botorch.models.transforms import Standardize
    from gpytorch.mlls import ExactMarginalLogLikelihood

    gp = SingleTaskGP(x, y, outcome_transform=Standardize(1))
    if start is not None:
        params = dict(gp.named_parameters())
        values = {n: torch.tensor(v, dtype=x.dtype, device=x.device) for n, v in start.items()}
        if values.keys() == params.keys() and all(
            values[n].shape == p.shape for n, p in params.items()
        ):  # another kernel or dimension count: start from the defaults
            with torch.no_grad():
                for n, p in params.items():
                    p.copy_(values[n])
    fit_gpytorch_mll(ExactMarginalLogLikelihood(gp.likelihood, gp))
    return gp


def reference_point(y: np.ndarray, thresholds: list[float | None]) -> list[float]:
    """Per objective (maximized): its threshold where given, else BoTorch's rule, the worst
    value on the front minus a tenth of the front's range."""
    from botorch.utils.multi_objective import is_non_dominated

    front = y[is_non_dominated(torch.from_numpy(y)).numpy()]
    lo, hi = front.min(0), front.max(0)
    span = np.where(hi > lo, hi - lo, np.maximum(1.0, np.abs(lo)))
    return [t if t is not None else float(lo[j] - 0.1 * span[j]) for j, t in enumerate(thresholds)]


def acquisition(
    model: Any, x: torch.Tensor, n_obj: int, n_con: int, ref: list[float],
    pending: torch.Tensor | None, mc_samples: int, seed: int, unwarp: Callable[[Any], Any],
) -> Any:  # fmt: skip
    """qLogNEI (1 objective), qLogNEHVI (2-4) or qLogNParEGO (more) on the model's first
    `n_obj` outputs, mapped back to the user's units by `unwarp` (so `ref` is in those units);
    the next `n_con` outputs are constraints (<= 0), entering as smoothed feasibility."""
    from botorch.acquisition.logei import qLogNoisyExpectedImprovement
    from botorch.acquisition.multi_objective.logei import (
        qLogNoisyExpectedHypervolumeImprovement,
    )
    from botorch.acquisition.multi_objective.objective import GenericMCMultiOutputObjective
    from botorch.acquisition.multi_objective.parego import qLogNParEGO
    from botorch.acquisition.multi_objective.utils import prune_inferior_points_multi_objective
    from botorch.acquisition.objective import GenericMCObjective
    from botorch.acquisition.utils import prune_inferior_points
    from botorch.sampling import SobolQMCNormalSampler

    sampler = SobolQMCNormalSampler(torch.Size([mc_samples]), seed=seed)
    cons = [_output(i) for i in range(n_obj, n_obj + n_con)] or None
    common: dict[str, Any] = {"model": model, "sampler": sampler, "constraints": cons,
                              "X_pending": pending, "prune_baseline": False}  # fmt: skip

    def objectives(z: torch.Tensor, X: torch.Tensor | None = None) -> torch.Tensor:
        return unwarp(z[..., :n_obj])

    def only(z: torch.Tensor, X: torch.Tensor | None = None) -> torch.Tensor:
        return objectives(z)[..., 0]

    if n_obj == 1:
        first = GenericMCObjective(only)
        base = prune_inferior_points(model, x, first, constraints=cons, num_samples=_PRUNE_SAMPLES)
        return qLogNoisyExpectedImprovement(objective=first, X_baseline=base, **common)
    objective = GenericMCMultiOutputObjective(objectives)
    ref_t = torch.tensor(ref, dtype=x.dtype, device=x.device)
    base = prune_inferior_points_multi_objective(model, x, ref_t, objective, constraints=cons,
                                                 num_samples=_PRUNE_SAMPLES)  # fmt: skip
    if n_obj > 4:
        return qLogNParEGO(objective=objective, X_baseline=base, **common)
    return qLogNoisyExpectedHypervolumeImprovement(ref_point=ref_t, objective=objective,
                                                   X_baseline=base, **common)  # fmt: skip


def _output(i: int) -> Callable[[torch.Tensor], torch.Tensor]:
    return lambda z: z[..., i]


# (model output, bound, sign): the region where sign * (output - bound) >= 0
Goal = tuple[int, float, float]


def log_probability_of_region(model: Any, goals: list[Goal], pending: torch.Tensor | None) -> Any:
    """log P(every goal holds) at a point, the outputs independent: what the sampler maximizes
    while no trial is feasible, or none reaches the thresholds yet. Analytic, so it still ranks
    points where the probability is 1e-50 (a Monte Carlo estimate is 0 everywhere there).
    Pending points are believed to come out at their posterior mean (kriging believer), which
    takes the uncertainty out of their neighbourhood, so a new point goes elsewhere."""
    from botorch.acquisition import AcquisitionFunction
    from botorch.utils.transforms import t_batch_mode_transform

    if pending is not None:
        model = _believe(model, pending)

    class LogProbabilityOfRegion(AcquisitionFunction):
        @t_batch_mode_transform(expected_q=1)  # type: ignore[arg-type]
        def forward(self, X: torch.Tensor) -> torch.Tensor:
            posterior: Any = self.model.posterior(X)
            mean = posterior.mean.squeeze(-2)
            sd = posterior.variance.clamp_min(1e-12).sqrt().squeeze(-2)
            return sum(torch.special.log_ndtr(sign * (mean[..., i] - bound) / sd[..., i])
                       for i, bound, sign in goals)  # fmt: skip

    return LogProbabilityOfRegion(model)


def _believe(model: Any, x: torch.Tensor) -> Any:
    """`model` as if it had observed its posterior mean at `x`."""
    from botorch.models import ModelListGP

    if isinstance(model, ModelListGP):
        return ModelListGP(*(_believe(m, x) for m in model.models))
    with torch.no_grad():
        return model.condition_on_observations(x, model.posterior(x).mean)
