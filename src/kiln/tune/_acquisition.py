"""The Bayes sampler's models and acquisition functions (BoTorch), on tensors only: fitting,
reference points, baseline pruning and the feasibility-first acquisition."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

# Baseline pruning estimates from posterior samples which observed points may still be on the
# front; BoTorch's default of 2048 samples costs more than the rest of a suggestion at 200 trials.
_PRUNE_SAMPLES = 256


def fit_gp(x: torch.Tensor, y: torch.Tensor) -> Any:
    """One GP per column of `y` (n x k), each fitted alone (outcomes standardized, BoTorch's
    dimension-scaled priors), then stacked into one batched model: fitting the columns apart
    converges in fewer steps, and the batched model evaluates the acquisition faster."""
    from botorch.models import SingleTaskGP
    from botorch.models.transforms import Standardize

    singles = [_fit(x, y[:, j : j + 1]) for j in range(y.shape[-1])]
    if len(singles) == 1:
        return singles[0]
    gp = SingleTaskGP(x, y, outcome_transform=Standardize(y.shape[-1]))
    parts = [dict(s.named_parameters()) for s in singles]
    with torch.no_grad():
        for name, param in gp.named_parameters():
            param.copy_(torch.stack([p[name] for p in parts]).reshape(param.shape))
    return gp.eval()


def _fit(x: torch.Tensor, y: torch.Tensor) -> Any:
    from botorch.fit import fit_gpytorch_mll
    from botorch.models import SingleTaskGP
    from botorch.models.transforms import Standardize
    from gpytorch.mlls import ExactMarginalLogLikelihood

    gp = SingleTaskGP(x, y, outcome_transform=Standardize(1))
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


def output(i: int) -> Any:
    return lambda z: z[..., i]


def _first_output(z: torch.Tensor, X: torch.Tensor | None = None) -> torch.Tensor:
    return z[..., 0]


def acquisition(
    model: Any, x: torch.Tensor, n_obj: int, n_con: int, ref: list[float] | None,
    pending: torch.Tensor | None, mc_samples: int, seed: int,
) -> Any:  # fmt: skip
    """qLogNEI (1 objective), qLogNEHVI (2-4) or qLogNParEGO (more), the constraint outputs
    entering as smoothed feasibility; `ref` None means no trial is feasible yet, and then the
    probability of feasibility is maximized instead."""
    from botorch.acquisition.multi_objective.logei import (
        qLogNoisyExpectedHypervolumeImprovement,
    )
    from botorch.acquisition.multi_objective.objective import IdentityMCMultiOutputObjective
    from botorch.acquisition.multi_objective.parego import qLogNParEGO
    from botorch.acquisition.multi_objective.utils import prune_inferior_points_multi_objective
    from botorch.acquisition.objective import GenericMCObjective
    from botorch.acquisition.utils import prune_inferior_points
    from botorch.sampling import SobolQMCNormalSampler

    sampler = SobolQMCNormalSampler(torch.Size([mc_samples]), seed=seed)
    cons = [output(i) for i in range(n_obj, n_obj + n_con)] or None
    if ref is None:
        return log_feasibility(model, cons or [], sampler, pending)
    common: dict[str, Any] = {"model": model, "sampler": sampler, "constraints": cons,
                              "X_pending": pending, "prune_baseline": False}  # fmt: skip
    if n_obj == 1:
        from botorch.acquisition.logei import qLogNoisyExpectedImprovement

        first = GenericMCObjective(_first_output)
        base = prune_inferior_points(model, x, first, constraints=cons, num_samples=_PRUNE_SAMPLES)
        return qLogNoisyExpectedImprovement(objective=first, X_baseline=base, **common)
    objective = IdentityMCMultiOutputObjective(outcomes=list(range(n_obj)))
    ref_t = torch.tensor(ref, dtype=x.dtype, device=x.device)
    base = prune_inferior_points_multi_objective(model, x, ref_t, objective, constraints=cons,
                                                 num_samples=_PRUNE_SAMPLES)  # fmt: skip
    if n_obj > 4:
        return qLogNParEGO(objective=objective, X_baseline=base, **common)
    return qLogNoisyExpectedHypervolumeImprovement(ref_point=ref_t, objective=objective,
                                                   X_baseline=base, **common)  # fmt: skip


def log_feasibility(model: Any, cons: list[Any], sampler: Any, pending: Any) -> Any:
    """log E[max over the joint batch (new + pending points) of P(all constraints hold)]:
    pending points already count, so a new point is worth most where they are not."""
    from botorch.acquisition.monte_carlo import MCAcquisitionFunction
    from botorch.acquisition.objective import GenericMCObjective
    from botorch.utils.transforms import concatenate_pending_points, t_batch_mode_transform

    class LogFeasibility(MCAcquisitionFunction):
        @concatenate_pending_points
        @t_batch_mode_transform()  # type: ignore[arg-type]
        def forward(self, X: torch.Tensor) -> torch.Tensor:
            z = self.get_posterior_samples(self.model.posterior(X))
            g = torch.stack([c(z) for c in cons], dim=-1)
            feasible = torch.sigmoid(-g / 1e-2).prod(-1)
            return feasible.max(-1).values.mean(0).clamp_min(1e-30).log()

    # the objective is unused (forward reads the samples) but BoTorch wants one for many outputs
    acq = LogFeasibility(model, sampler=sampler, objective=GenericMCObjective(_first_output))
    acq.set_X_pending(pending)
    return acq
