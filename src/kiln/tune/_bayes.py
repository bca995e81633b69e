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

from kiln.tune._acquisition import Goal, Hypers, reference_point
from kiln.tune._pareto import hypervolume_contributions
from kiln.tune._sampler import BaseSampler, Sobol
from kiln.tune._space import Space
from kiln.tune._trial import Trial, TrialState
from kiln.tune._warp import TailWarp

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
    indicator once a trial has failed), fitted on the unit-cube encoding of the parameters;
    objectives with their worse half log-compressed (`TailWarp`), acquisitions in the user's
    units.

    - The first `n_startup` trials (default `max(3, dims + 1)`) are a scrambled Sobol sequence.
    - Trust region first: the next `local_steps` suggestions (default `2 * dims`) maximize the
      acquisition only within a box of side `local_size` of the unit cube around the best
      point (one objective) or the front point of largest hypervolume contribution, judged by
      the models' posterior means (so noise does not pick it). A model fitted to a dozen
      points is least trustworthy far from them, and over the whole cube the acquisition sends
      those early evaluations to its corners (DTLZ2, 6-D: 28.5 evaluations to random search's
      200-evaluation hypervolume over the whole cube, 18 with the box). Afterwards, and
      while no feasible trial beats the reference point, over the whole cube. Categorical
      coordinates are never boxed.
    - One objective: qLogNEI. Two to four: qLogNEHVI, its reference point the study's
      thresholds (else inferred from the front). More: qLogNParEGO. Metric constraints enter
      each as smoothed feasibility.
    - While no completed trial is feasible, it maximizes the probability of feasibility
      (analytic, in log space). While no feasible trial beats every threshold, wherever the
      hypervolume improvement vanishes it maximizes the probability of beating them.
    - Pending and running trials are `X_pending`, so parallel workers get distinct points;
      `n > 1` optimizes the batch jointly (one point at a time while seeking feasibility,
      each believing the ones before it at their posterior mean).
    - Categorical parameters are one-hot blocks: with at most `max_combinations` joint choices
      the acquisition is optimized for each choice exactly (BoTorch's optimize_acqf_mixed),
      beyond that the relaxed point is rounded to its largest coordinate. Integers are
      rounded; linear constraints bound the optimizer.
    - From `WARM_START_FROM` (30) completed trials on, each GP fit starts from the
      hyperparameters the last suggestion stored on its trial (`Trial.system`), a fraction of a
      fit from the defaults (0.05 instead of 0.32 s at 200 trials on one CPU thread).
    - Runs on `device` (float64). By default on the CPU until `gpu_from` trials have
      completed, then on the GPU when one is present: a GP of a few hundred points is too small
      for a GPU, whose time goes to launching small kernels and to the host round trips of the
      optimizers (H100 vs its host's 16 cores, 2 objectives, 2026-11-27: 1.88 vs 1.15 s per
      suggestion at 200 trials, even at 500).
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
        local_steps: int | None = None,
        local_size: float = 0.2,
        precompute: bool = False,
        device: str | None = None,
        gpu_from: int = 500,
    ) -> None:
        super().__init__(seed)
        self.n_startup = n_startup
        self.num_restarts, self.raw_samples, self.mc_samples = num_restarts, raw_samples, mc_samples
        self.max_combinations, self.precompute, self.device = max_combinations, precompute, device
        self.gpu_from = gpu_from
        if not 0.0 < local_size <= 1.0:
            raise ValueError(f"local_size must be in (0, 1]. Received: {local_size!r}")
        self.local_steps, self.local_size = local_steps, float(local_size)
        self.timings: dict[str, float] = {}
        self._job: tuple[list[Trial], threading.Thread, list[Any]] | None = None

    def to_json(self) -> dict[str, Any]:
        return {**super().to_json(), "n_startup": self.n_startup,
                "num_restarts": self.num_restarts, "raw_samples": self.raw_samples,
                "mc_samples": self.mc_samples, "max_combinations": self.max_combinations,
                "local_steps": self.local_steps, "local_size": self.local_size,
                "precompute": self.precompute, "device": self.device,
                "gpu_from": self.gpu_from}  # fmt: skip

    def device_for(self, completed: int) -> torch.device:
        """Where a suggestion from `completed` trials runs (see the class notes)."""
        if self.device is not None:
            return torch.device(self.device)
        gpu = torch.cuda.is_available() and completed >= self.gpu_from
        return torch.device("cuda" if gpu else "cpu")

    def suggest(self, study: Study, n: int = 1) -> list[dict[str, Any]]:
        _require_botorch()
        trials = study.trials
        job, self._job = self._job, None  # a stale job runs out on its own, unread
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
        ahead = trials + [Trial(len(trials) + i, p, TrialState.RUNNING, started=now,
                                system=dict(getattr(p, "system", {})))
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
        startup = self.n_startup or max(3, study.space.dims + 1)
        if len(done) < startup or study.space.dims == 0:  # nothing to model in a fixed space
            return Sobol(self.seed).points(study.space, len(trials), n, taken)
        seed = self.seed * 100_003 + len(trials)
        try:
            with warnings.catch_warnings(), _seeded(seed, background):
                warnings.simplefilter("ignore")
                steps = 2 * study.space.dims if self.local_steps is None else self.local_steps
                local = len(done) < startup + steps
                points, hypers = self._optimize(study, trials, done, busy, n, seed, local)
        except ImportError:
            raise
        except Exception as e:  # a model that cannot be fitted must not stop the study
            warnings.warn(f"Bayes fell back to random points ({type(e).__name__}: {e})",
                          RuntimeWarning, stacklevel=2)  # fmt: skip
            rng = np.random.default_rng([self.seed, len(trials)])
            return [self._unique(study.space, taken, lambda: rng.random(study.space.dims))
                    for _ in range(n)]  # fmt: skip
        out = self._decode_unique(study, points, taken, len(trials))
        return [_Suggested(p, {GP_HYPERS: hypers}) for p in out]

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
        seed: int, local: bool = False,
    ) -> tuple[np.ndarray, list[Hypers]]:  # fmt: skip
        from botorch.models import ModelListGP

        from kiln.tune._acquisition import acquisition, fit_gp, fit_gps, log_probability_of_region

        device = self.device_for(len(done))
        tkw: dict[str, Any] = {"dtype": torch.float64, "device": device}
        space, start = study.space, time.perf_counter()
        x = torch.tensor([space.encode(t.params) for t in done], **tkw)
        y, cons = self._outcomes(study, done)
        warp = TailWarp(y)
        outcomes = torch.tensor(np.hstack([warp(y), cons]), **tkw)
        warm = _latest_hypers(trials) if len(done) >= WARM_START_FROM else None
        model, hypers = fit_gps(x, outcomes, warm)
        n_obj, n_con = y.shape[1], cons.shape[1]
        failed = [t for t in trials if t.state is TrialState.FAILED]
        if failed:  # teach the model where evaluations fail: +1 failed, -1 completed
            xf = torch.cat([x, torch.tensor([space.encode(t.params) for t in failed], **tkw)])
            yf = torch.tensor([[-1.0]] * len(done) + [[1.0]] * len(failed), **tkw)
            model, n_con = ModelListGP(model, fit_gp(xf, yf)), n_con + 1
        fitted = time.perf_counter()
        pending = torch.tensor([space.encode(t.params) for t in busy], **tkw).reshape(
            -1, space.dims
        )
        goals, ref = self._targets(study, y, cons, warp, n_con)
        acq = None
        if ref:
            acq = acquisition(model, x, n_obj, n_con, ref, pending if len(busy) else None,
                              self.mc_samples, self.seed, warp.inverse)  # fmt: skip
        if acq is not None and (goals is None or not _vanishing(acq, space.dims, y, seed, tkw)):
            box = self._trust_region(model, x, n_obj, cons, ref, warp, space) if local else None
            candidates = self._maximize(acq, space, n, seed, tkw, box)
        else:  # reach the region first, one point at a time, each believing those before it
            candidates = pending[:0]
            for _ in range(n):
                believed = torch.cat([pending, candidates])
                region = log_probability_of_region(
                    model, goals or [], believed if len(believed) else None
                )
                candidates = torch.cat([candidates, self._maximize(region, space, 1, seed, tkw)])
        self.timings = {"fit": fitted - start, "acquisition": time.perf_counter() - fitted}
        return candidates.detach().cpu().numpy(), hypers

    def _trust_region(
        self, model: Any, x: torch.Tensor, n_obj: int, cons: np.ndarray, ref: list[float],
        warp: TailWarp, space: Space,
    ) -> np.ndarray | None:  # fmt: skip
        """(2, dims) bounds of the box around the best feasible point by posterior mean (the
        largest hypervolume contribution with several objectives), or None if no feasible
        point beats the reference point."""
        with torch.no_grad():
            mean = warp.inverse(model.posterior(x).mean[..., :n_obj]).cpu().numpy()
        ok = (cons <= 0).all(axis=1) & (mean > np.array(ref)).all(axis=1)
        if not ok.any():
            return None
        score = mean[ok, 0] if n_obj == 1 else hypervolume_contributions(mean[ok], np.array(ref))
        center = x.cpu().numpy()[ok][int(np.argmax(score))]
        box = np.stack([center - self.local_size / 2, center + self.local_size / 2]).clip(0, 1)
        box[:, space.categorical_dims()] = [[0.0], [1.0]]
        return box

    def _maximize(
        self, acq: Any, space: Space, q: int, seed: int, tkw: dict[str, Any],
        box: np.ndarray | None = None,
    ) -> torch.Tensor:  # fmt: skip
        from botorch.optim import optimize_acqf, optimize_acqf_mixed

        if box is None:
            bounds = torch.stack([torch.zeros(space.dims, **tkw), torch.ones(space.dims, **tkw)])
        else:
            bounds = torch.as_tensor(box, **tkw)
        ineq = [(torch.tensor(i, device=tkw["device"]), torch.tensor(c, **tkw), r)
                for i, c, r in space.unit_inequalities()]  # fmt: skip
        kwargs: dict[str, Any] = {
            "bounds": bounds, "q": q, "num_restarts": self.num_restarts,
            "raw_samples": self.raw_samples, "inequality_constraints": ineq or None,
            # L-BFGS-B stops once an iteration gains less than FTOL (relative)
            "options": {"batch_limit": 8, "init_batch_limit": 512, "maxiter": 200, "seed": seed,
                        "factr": None, "ftol": FTOL},
            # BoTorch would start over from new points when one restart's line search warns,
            # discarding the others' work: a second whole optimization, the slowest 5% of
            # suggestions at 200 trials (1.2 instead of 0.55 s). The best restart is kept.
            "retry_on_optimization_warning": False,
        }  # fmt: skip
        combos = space.one_hot_combinations(self.max_combinations)
        if combos:  # few categorical choices: optimize each exactly, keep the best
            return optimize_acqf_mixed(acq, fixed_features_list=combos, **kwargs)[0]
        return optimize_acqf(acq, **kwargs)[0]

    @staticmethod
    def _outcomes(study: Study, done: list[Trial]) -> tuple[np.ndarray, np.ndarray]:
        """Objective values (maximized) and constraint values (feasible when <= 0), a row per
        trial."""
        y = np.stack([study.maximized(t.values) for t in done])
        signs = [(1.0 if op == "<=" else -1.0, metric, bound)
                 for metric, (op, bound) in study.constraints.items()]  # fmt: skip
        cons = np.array([[s * (t.values[m] - b) for s, m, b in signs] for t in done])
        return y, cons.reshape(len(done), len(signs))

    @staticmethod
    def _targets(
        study: Study, y: np.ndarray, cons: np.ndarray, warp: TailWarp, n_con: int
    ) -> tuple[list[Goal] | None, list[float]]:
        """The hypervolume's reference point (maximized, in the user's units; none while no
        trial is feasible), and the region to reach first as goals for
        `log_probability_of_region`: feasibility while no trial is feasible; with several
        objectives, also every threshold given while no feasible trial beats them all (used
        only where the hypervolume improvement vanishes); else None."""
        n_obj = y.shape[1]
        goals: list[Goal] = [(n_obj + k, 0.0, -1.0) for k in range(n_con)]  # outputs <= 0
        feasible = (cons <= 0).all(axis=1)
        if not feasible.any():
            return goals, []
        thresholds = [(1 if d == "max" else -1) * study.thresholds[m]
                      if m in study.thresholds else None
                      for m, d in study.objectives.items()]  # fmt: skip
        ref = reference_point(y[feasible], thresholds)
        given = [j for j, t in enumerate(thresholds) if t is not None]
        if n_obj == 1 or not given or (y[feasible][:, given] > np.array(ref)[given]).all(1).any():
            return None, ref
        warped = warp(np.array([ref]))[0]
        return goals + [(j, float(warped[j]), 1.0) for j in given], ref


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


def _vanishing(acq: Any, dims: int, y: np.ndarray, seed: int, tkw: dict[str, Any]) -> bool:
    """Whether the (log) acquisition is below e^-15 of the objectives' scale at every point of
    a Sobol sample of the cube: nowhere near the thresholds, it ranks points by numerical
    tails, and the optimizer can stick to one spot (a Branin-Currin run evaluated the same
    corner 20 times). The probability of reaching the thresholds still ranks them."""
    x = torch.quasirandom.SobolEngine(dims, scramble=True, seed=seed).draw(256).to(**tkw)
    scale = float(np.log(np.prod(np.maximum(y.std(axis=0), 1e-12))))
    with torch.no_grad():
        return float(acq(x.unsqueeze(1)).max()) - scale < -15.0


def _still_current(assumed: list[Trial], now: list[Trial]) -> bool:
    """Whether `now` is the history `assumed`, up to results of trials assumed busy."""
    if len(now) != len(assumed):
        return False
    for a, b in zip(assumed, now):
        unchanged = b.state is a.state or (not a.state.finished and b.state.finished)
        if a.number != b.number or a.params != b.params or not unchanged:
            return False
    return True


GP_HYPERS = "bayes_gp"  # the key of a suggestion's fitted GP hyperparameters in Trial.system
# From this many completed trials on, a fit starts from the last suggestion's hyperparameters.
# Before, fits are cheap and a dozen points can leave an early fit in a poor optimum that a warm
# start would keep (BraninCurrin, 14 trials: hypervolume 30 instead of 45 for one seed).
WARM_START_FROM = 30
# L-BFGS-B's relative tolerance on the acquisition (a log hypervolume improvement). At 200
# trials (BraninCurrin, dev CPU, one thread) scipy's 2.2e-9 took 20 acquisition evaluations at
# the median and 54 in the slowest suggestions, polishing digits that do not move the point:
# 1e-6 cut p95 from 0.56 to 0.43 s (p50 0.39 s both), with the same evaluations-to-target
# medians within one evaluation on all five tune_quality problems (10 seeds).
FTOL = 1e-6


class _Suggested(dict[str, Any]):
    """A suggestion's parameters, and what its trial keeps in `Trial.system`: the hyperparameters
    of the GPs it was chosen with. The next suggestion starts its fit from them, the latest
    trial's that has them, so it depends on the stored history alone: a study loaded from its
    storage, or one served to workers on other hosts, fits exactly as the uninterrupted one."""

    def __init__(self, params: dict[str, Any], system: dict[str, Any]) -> None:
        super().__init__(params)
        self.system = system


def _latest_hypers(trials: list[Trial]) -> list[Hypers] | None:
    for trial in sorted(trials, key=lambda t: t.number, reverse=True):
        if GP_HYPERS in trial.system:
            return trial.system[GP_HYPERS]  # type: ignore[no-any-return]
    return None
