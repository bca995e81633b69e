"""`Bayes`: Gaussian-process Bayesian optimization on BoTorch (the `tune` extra)."""

from __future__ import annotations

import threading
import time
import warnings
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from kiln.tune._sampler import BaseSampler, Sobol
from kiln.tune._trial import Trial, TrialState

if TYPE_CHECKING:
    from kiln.tune._study import Study

_INSTALL = "pip install 'kiln[tune]'  (botorch>=0.12, gpytorch)"


def _require_botorch() -> None:
    try:
        import botorch  # noqa: F401
        import gpytorch  # noqa: F401
    except ImportError as e:
        raise ImportError(
            f"kiln.tune's Bayes sampler needs BoTorch and GPyTorch: {_INSTALL}"
        ) from e


class Bayes(BaseSampler):
    """One Gaussian process per metric (objectives, metric constraints, and a failure
    indicator once a trial has failed), fitted on the unit-cube encoding of the parameters.

    - The first `n_startup` trials (default `max(5, dims + 1)`) are a scrambled Sobol sequence.
    - One objective: qLogNEI. Two to four: qLogNEHVI with the study's thresholds as reference
      point. More: qLogNParEGO. Metric constraints enter each as smoothed feasibility.
    - While no completed trial is feasible, it maximizes the probability of feasibility.
    - Pending and running trials are `X_pending`, so parallel workers get distinct points;
      `n > 1` optimizes the batch jointly.
    - Categorical parameters are one-hot blocks: with at most `max_combinations` joint choices
      the acquisition is optimized for each choice exactly (BoTorch's optimize_acqf_mixed),
      beyond that the relaxed point is rounded to its largest coordinate. Integers are
      rounded; linear constraints bound the optimizer.
    - Runs on the GPU when one is present (float64).
    - `precompute=True` starts the next suggestion in a background thread as soon as one is
      handed out, treating the trials still running as pending; the next `ask` takes it if no
      other trial was asked for meanwhile, so its latency hides behind the running trials.
      The suggestion then ignores results that arrived while it was computed, and which trials
      finished first depends on timing: exact determinism under a seed needs the default off.
    """

    def __init__(
        self,
        seed: int | None = None,
        n_startup: int | None = None,
        num_restarts: int = 4,
        raw_samples: int = 256,
        mc_samples: int = 128,
        max_combinations: int = 8,
        precompute: bool = False,
    ) -> None:
        super().__init__(seed)
        self.n_startup = n_startup
        self.num_restarts, self.raw_samples, self.mc_samples = num_restarts, raw_samples, mc_samples
        self.max_combinations, self.precompute = max_combinations, precompute
        self._job: tuple[tuple[int, int], threading.Thread, list[Any]] | None = None

    def to_json(self) -> dict[str, Any]:
        return {**super().to_json(), "n_startup": self.n_startup,
                "num_restarts": self.num_restarts, "raw_samples": self.raw_samples,
                "mc_samples": self.mc_samples,
                "max_combinations": self.max_combinations,
                "precompute": self.precompute}  # fmt: skip

    def suggest(self, study: Study, n: int = 1) -> list[dict[str, Any]]:
        _require_botorch()
        trials = study.trials
        job, self._job = self._job, None
        if job is not None and job[0] == (len(trials), n):
            job[1].join()  # computed while the trials ran: their results arrived since
            out = job[2][0] if job[2] else self._suggest(study, trials, n)
        else:
            out = self._suggest(study, trials, n)
        if self.precompute:
            self._precompute(study, trials, out)
        return out

    def _precompute(self, study: Study, trials: list[Trial], out: list[dict[str, Any]]) -> None:
        """Start the next suggestion now, as if the trials just asked for were all running."""
        now = time.time()
        ahead = trials + [Trial(len(trials) + i, p, TrialState.RUNNING, started=now)
                          for i, p in enumerate(out)]  # fmt: skip
        result: list[list[dict[str, Any]]] = []
        # not a daemon: the interpreter waits for it at exit instead of killing it inside torch
        thread = threading.Thread(target=lambda: result.extend([self._suggest(study, ahead, 1)]))
        self._job = ((len(ahead), 1), thread, result)
        thread.start()

    def _suggest(self, study: Study, trials: list[Trial], n: int) -> list[dict[str, Any]]:
        done = [t for t in trials if t.state is TrialState.COMPLETED]
        busy = self.busy(trials)
        taken = [t.params for t in busy]
        startup = self.n_startup or max(5, study.space.dims + 1)
        if len(done) < startup:
            return Sobol(self.seed).points(study.space, len(trials), n, taken)
        try:
            with torch.random.fork_rng(), warnings.catch_warnings():
                warnings.simplefilter("ignore")
                torch.manual_seed(self.seed * 100_003 + len(trials))
                points = self._optimize(study, trials, done, busy, n)
        except ImportError:
            raise
        except Exception as e:  # a model that cannot be fitted must not stop the study
            warnings.warn(f"Bayes fell back to random points ({type(e).__name__}: {e})",
                          RuntimeWarning, stacklevel=2)  # fmt: skip
            rng = np.random.default_rng([self.seed, len(trials)])
            return [self._unique(study.space, taken, lambda: rng.random(study.space.dims))
                    for _ in range(n)]  # fmt: skip
        return self._decode_unique(study, points, taken, len(trials))

    def _decode_unique(
        self, study: Study, points: np.ndarray, taken: list[dict[str, Any]], index: int
    ) -> list[dict[str, Any]]:
        space, out = study.space, list[dict[str, Any]]()
        rng = np.random.default_rng([self.seed, index, 1])
        for u in points:
            params = space.decode(u)
            if params in taken + out or not space.feasible(params):
                params = self._unique(space, taken + out, lambda: rng.random(space.dims))
            out.append(params)
        return out

    def _optimize(
        self, study: Study, trials: list[Trial], done: list[Trial], busy: list[Trial], n: int
    ) -> np.ndarray:
        from botorch.optim import optimize_acqf, optimize_acqf_mixed

        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        tkw: dict[str, Any] = {"dtype": torch.float64, "device": device}
        space = study.space
        x = torch.tensor([space.encode(t.params) for t in done], **tkw)
        columns, n_obj, n_con = self._outcomes(study, done)
        failed = [t for t in trials if t.state is TrialState.FAILED]
        models = [self._gp(x, torch.tensor(c, **tkw)) for c in columns]
        if failed:  # teach the model where evaluations fail: +1 failed, -1 completed
            xf = torch.cat([x, torch.tensor([space.encode(t.params) for t in failed], **tkw)])
            yf = torch.tensor([-1.0] * len(done) + [1.0] * len(failed), **tkw)
            models.append(self._gp(xf, yf))
            n_con += 1
        from botorch.models import ModelListGP

        model = ModelListGP(*models)
        pending = (torch.tensor([space.encode(t.params) for t in busy], **tkw)
                   if busy else None)  # fmt: skip
        feasible = [study.is_feasible(t.values) for t in done]
        acq = self._acquisition(study, model, x, n_obj, n_con, any(feasible), pending)
        bounds = torch.stack([torch.zeros(space.dims, **tkw), torch.ones(space.dims, **tkw)])
        ineq = [(torch.tensor(i, device=device), torch.tensor(c, **tkw), r)
                for i, c, r in space.unit_inequalities()]  # fmt: skip
        kwargs: dict[str, Any] = {
            "bounds": bounds, "q": n, "num_restarts": self.num_restarts,
            "raw_samples": self.raw_samples, "inequality_constraints": ineq or None,
            "options": {"batch_limit": 8, "maxiter": 200},
        }  # fmt: skip
        combos = space.one_hot_combinations(self.max_combinations)
        if combos:  # few categorical choices: optimize each exactly, keep the best
            candidates, _ = optimize_acqf_mixed(acq, fixed_features_list=combos, **kwargs)
        else:
            candidates, _ = optimize_acqf(acq, **kwargs)
        return candidates.detach().cpu().numpy()

    @staticmethod
    def _outcomes(study: Study, done: list[Trial]) -> tuple[list[list[float]], int, int]:
        """Objective columns (maximized), then constraint columns (feasible when <= 0)."""
        ys = np.stack([study.maximized(t.values) for t in done])
        columns = [list(ys[:, j]) for j in range(ys.shape[1])]
        for metric, (op, bound) in study.constraints.items():
            sign = 1.0 if op == "<=" else -1.0
            columns.append([sign * (t.values[metric] - bound) for t in done])
        return columns, ys.shape[1], len(study.constraints)

    @staticmethod
    def _gp(x: torch.Tensor, y: torch.Tensor) -> Any:
        from botorch.fit import fit_gpytorch_mll
        from botorch.models import SingleTaskGP
        from botorch.models.transforms import Standardize
        from gpytorch.mlls import ExactMarginalLogLikelihood

        gp = SingleTaskGP(x, y.unsqueeze(-1), outcome_transform=Standardize(1))
        fit_gpytorch_mll(ExactMarginalLogLikelihood(gp.likelihood, gp))
        return gp

    def _acquisition(
        self, study: Study, model: Any, x: torch.Tensor, n_obj: int, n_con: int,
        any_feasible: bool, pending: torch.Tensor | None,
    ) -> Any:  # fmt: skip
        from botorch.acquisition.multi_objective.logei import (
            qLogNoisyExpectedHypervolumeImprovement,
        )
        from botorch.acquisition.multi_objective.objective import IdentityMCMultiOutputObjective
        from botorch.acquisition.multi_objective.parego import qLogNParEGO
        from botorch.acquisition.objective import GenericMCObjective
        from botorch.sampling import SobolQMCNormalSampler

        sampler = SobolQMCNormalSampler(torch.Size([self.mc_samples]), seed=self.seed)
        cons = [_output(i) for i in range(n_obj, n_obj + n_con)]
        if n_con and not any_feasible:
            return _LogFeasibility(model, cons, sampler, pending)
        common: dict[str, Any] = {"model": model, "X_baseline": x, "sampler": sampler,
                                  "constraints": cons or None, "X_pending": pending,
                                  "prune_baseline": True}  # fmt: skip
        if n_obj == 1:
            from botorch.acquisition.logei import qLogNoisyExpectedImprovement

            first = GenericMCObjective(_first_output)
            return qLogNoisyExpectedImprovement(objective=first, **common)
        objective = IdentityMCMultiOutputObjective(outcomes=list(range(n_obj)))
        if n_obj > 4:
            return qLogNParEGO(objective=objective, **common)
        ref = torch.tensor(study.reference_point(), dtype=x.dtype, device=x.device)
        return qLogNoisyExpectedHypervolumeImprovement(ref_point=ref, objective=objective, **common)


def _output(i: int) -> Any:
    return lambda z: z[..., i]


def _first_output(z: torch.Tensor, X: torch.Tensor | None = None) -> torch.Tensor:
    return z[..., 0]


def _LogFeasibility(model: Any, cons: list[Any], sampler: Any, pending: Any) -> Any:
    """log E[max over the joint batch (new + pending points) of P(all constraints hold)]:
    pending points already count, so a new point is worth most where they are not."""
    from botorch.acquisition.monte_carlo import MCAcquisitionFunction
    from botorch.utils.transforms import concatenate_pending_points, t_batch_mode_transform

    class LogFeasibility(MCAcquisitionFunction):
        @concatenate_pending_points
        @t_batch_mode_transform()  # type: ignore[arg-type]
        def forward(self, X: torch.Tensor) -> torch.Tensor:
            z = self.get_posterior_samples(self.model.posterior(X))
            g = torch.stack([c(z) for c in cons], dim=-1)
            feasible = torch.sigmoid(-g / 1e-2).prod(-1)
            return feasible.max(-1).values.mean(0).clamp_min(1e-30).log()

    from botorch.acquisition.objective import GenericMCObjective

    # the objective is unused (forward reads the samples) but BoTorch wants one for many outputs
    acq = LogFeasibility(model, sampler=sampler, objective=GenericMCObjective(_first_output))
    acq.set_X_pending(pending)
    return acq
