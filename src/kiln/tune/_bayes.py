"""`Bayes`: Gaussian-process Bayesian optimization on BoTorch (the `tune` extra)."""

from __future__ import annotations

import contextlib
import threading
import time
import warnings
from collections.abc import Iterator
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
    """Gaussian processes for every metric (objectives, metric constraints, and a failure
    indicator once a trial has failed), fitted on the unit-cube encoding of the parameters.

    - The first `n_startup` trials (default `max(5, dims + 1)`) are a scrambled Sobol sequence.
    - One objective: qLogNEI. Two to four: qLogNEHVI, its reference point the study's
      thresholds (else inferred from the front). More: qLogNParEGO. Metric constraints enter
      each as smoothed feasibility.
    - While no completed trial is feasible, it maximizes the probability of feasibility.
    - Pending and running trials are `X_pending`, so parallel workers get distinct points;
      `n > 1` optimizes the batch jointly.
    - Categorical parameters are one-hot blocks: with at most `max_combinations` joint choices
      the acquisition is optimized for each choice exactly (BoTorch's optimize_acqf_mixed),
      beyond that the relaxed point is rounded to its largest coordinate. Integers are
      rounded; linear constraints bound the optimizer.
    - Runs on `device` (float64): by default the GPU when one is present, else the CPU.
      `timings` holds the seconds the last suggestion spent fitting and in the acquisition.
    - `precompute=True` starts the next suggestion in a background thread as soon as one is
      handed out, treating the trials then running as pending, so its latency hides behind
      them. The next `ask` takes it while the history is the one it was computed from, up to
      results of those running trials: if any other trial was asked for or enqueued since, it
      computes afresh (so never a duplicate). A taken suggestion ignores the results that
      arrived while it was computed (a rule that waited for them could never run ahead: a
      trial's result is what prompts the next ask), and which trials finished first depends
      on timing: exact determinism under a seed needs the default off.
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
        device: str | None = None,
    ) -> None:
        super().__init__(seed)
        self.n_startup = n_startup
        self.num_restarts, self.raw_samples, self.mc_samples = num_restarts, raw_samples, mc_samples
        self.max_combinations, self.precompute, self.device = max_combinations, precompute, device
        self.timings: dict[str, float] = {}
        self._job: tuple[list[Trial], threading.Thread, list[Any]] | None = None

    def to_json(self) -> dict[str, Any]:
        return {**super().to_json(), "n_startup": self.n_startup,
                "num_restarts": self.num_restarts, "raw_samples": self.raw_samples,
                "mc_samples": self.mc_samples, "max_combinations": self.max_combinations,
                "precompute": self.precompute, "device": self.device}  # fmt: skip

    def suggest(self, study: Study, n: int = 1) -> list[dict[str, Any]]:
        _require_botorch()
        trials = study.trials
        job, self._job = self._job, None
        out = None
        if job is not None and n == 1 and _still_current(job[0], trials):
            job[1].join()
            out = job[2][0] if job[2] else None
        if out is None:
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

        def work() -> None:
            with contextlib.suppress(Exception):  # ask() then computes it itself
                result.append(self._suggest(study, ahead, 1, background=True))

        # not a daemon: the interpreter waits for it at exit instead of killing it inside torch
        thread = threading.Thread(target=work)
        self._job = (ahead, thread, result)
        thread.start()

    def _suggest(
        self, study: Study, trials: list[Trial], n: int, background: bool = False
    ) -> list[dict[str, Any]]:
        done = [t for t in trials if t.state is TrialState.COMPLETED]
        busy = self.busy(trials)
        taken = [t.params for t in busy]
        startup = self.n_startup or max(5, study.space.dims + 1)
        if len(done) < startup:
            return Sobol(self.seed).points(study.space, len(trials), n, taken)
        seed = self.seed * 100_003 + len(trials)
        try:
            with warnings.catch_warnings(), _seeded(seed, background):
                warnings.simplefilter("ignore")
                points = self._optimize(study, trials, done, busy, n, seed)
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
        self, study: Study, trials: list[Trial], done: list[Trial], busy: list[Trial], n: int,
        seed: int,
    ) -> np.ndarray:  # fmt: skip
        from botorch.models import ModelListGP
        from botorch.optim import optimize_acqf, optimize_acqf_mixed

        from kiln.tune._acquisition import acquisition, fit_gp, reference_point

        device = torch.device(self.device or ("cuda" if torch.cuda.is_available() else "cpu"))
        tkw: dict[str, Any] = {"dtype": torch.float64, "device": device}
        space, start = study.space, time.perf_counter()
        x = torch.tensor([space.encode(t.params) for t in done], **tkw)
        columns, n_obj, n_con = self._outcomes(study, done)
        model = fit_gp(x, torch.tensor(columns, **tkw).T)
        failed = [t for t in trials if t.state is TrialState.FAILED]
        if failed:  # teach the model where evaluations fail: +1 failed, -1 completed
            xf = torch.cat([x, torch.tensor([space.encode(t.params) for t in failed], **tkw)])
            yf = torch.tensor([[-1.0]] * len(done) + [[1.0]] * len(failed), **tkw)
            model, n_con = ModelListGP(model, fit_gp(xf, yf)), n_con + 1
        fitted = time.perf_counter()
        pending = (torch.tensor([space.encode(t.params) for t in busy], **tkw)
                   if busy else None)  # fmt: skip
        feasible = [t for t in done if study.is_feasible(t.values)]
        ref = None
        if feasible:
            y = np.stack([study.maximized(t.values) for t in feasible])
            thresholds = [(1 if d == "max" else -1) * study.thresholds[m]
                          if m in study.thresholds else None
                          for m, d in study.objectives.items()]  # fmt: skip
            ref = reference_point(y, thresholds)
        acq = acquisition(model, x, n_obj, n_con, ref, pending, self.mc_samples, self.seed)
        bounds = torch.stack([torch.zeros(space.dims, **tkw), torch.ones(space.dims, **tkw)])
        ineq = [(torch.tensor(i, device=device), torch.tensor(c, **tkw), r)
                for i, c, r in space.unit_inequalities()]  # fmt: skip
        kwargs: dict[str, Any] = {
            "bounds": bounds, "q": n, "num_restarts": self.num_restarts,
            "raw_samples": self.raw_samples, "inequality_constraints": ineq or None,
            "options": {"batch_limit": 8, "init_batch_limit": 512, "maxiter": 200, "seed": seed},
        }  # fmt: skip
        combos = space.one_hot_combinations(self.max_combinations)
        if combos:  # few categorical choices: optimize each exactly, keep the best
            candidates, _ = optimize_acqf_mixed(acq, fixed_features_list=combos, **kwargs)
        else:
            candidates, _ = optimize_acqf(acq, **kwargs)
        points = candidates.detach().cpu().numpy()
        self.timings = {"fit": fitted - start, "acquisition": time.perf_counter() - fitted}
        return points

    @staticmethod
    def _outcomes(study: Study, done: list[Trial]) -> tuple[list[list[float]], int, int]:
        """Objective columns (maximized), then constraint columns (feasible when <= 0)."""
        ys = np.stack([study.maximized(t.values) for t in done])
        columns = [list(ys[:, j]) for j in range(ys.shape[1])]
        for metric, (op, bound) in study.constraints.items():
            sign = 1.0 if op == "<=" else -1.0
            columns.append([sign * (t.values[metric] - bound) for t in done])
        return columns, ys.shape[1], len(study.constraints)


@contextlib.contextmanager
def _seeded(seed: int, background: bool) -> Iterator[None]:
    """Seed torch's global generator for one suggestion, restoring it afterwards. Not in a
    background thread: there, restoring would rewind the stream that the user's code (a
    training loop, say) drew from meanwhile; BoTorch gets its seeds passed explicitly."""
    if background:
        yield
        return
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        yield


def _still_current(assumed: list[Trial], now: list[Trial]) -> bool:
    """Whether `now` is the history `assumed`, up to results of trials assumed busy."""
    if len(now) != len(assumed):
        return False
    for a, b in zip(assumed, now):
        unchanged = b.state is a.state or (not a.state.finished and b.state.finished)
        if a.number != b.number or a.params != b.params or not unchanged:
            return False
    return True
