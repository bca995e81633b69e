"""Suggestion latency against the size of the history: a history of n completed trials on
BraninCurrin (2 objectives), n - 1 Sobol points and a last one kiln's Bayes suggested (as in a
running study, where the fit starts from that suggestion's, see `Bayes`), then `reps`
suggestions from fresh samplers (other seeds) on it, timed one by one. `kiln_bayes_asks` times
instead what workers of a running study wait for in `ask` with `Bayes(precompute=True)`. Runs
alone, after the quality runs, so nothing else competes for the cores."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import torch
from _tune.problems import Problem
from _tune.runners import kiln_sampler, kiln_study

from kiln import tune


def _history(n: int) -> list[tuple[list[float], list[float]]]:
    prob = Problem("branin_currin")
    engine = torch.quasirandom.SobolEngine(prob.dim, scramble=True, seed=12345)
    points = engine.draw(n).double().tolist()
    return [(x, prob.evaluate(x).observed.tolist()) for x in points]


def kiln_bayes(sizes: list[int], reps: int, device: str) -> list[dict[str, Any]]:
    prob, rows = Problem("branin_currin"), []
    kiln_sampler("bayes", 0, device).suggest(_kiln_study(prob, _history(8)), 1)  # warm-up
    for n in sizes:
        study = _bayes_study(prob, n, device)
        for rep in range(reps):
            sampler = kiln_sampler("bayes", rep, device)
            start = time.perf_counter()
            sampler.suggest(study, 1)
            seconds = time.perf_counter() - start
            rows.append({"sampler": "bayes", "device": device, "n": n, "rep": rep,
                         "seconds": seconds, **sampler.timings})  # fmt: skip
    return rows


def kiln_bayes_asks(
    sizes: list[int], reps: int, device: str, trial_s: float, workers: int = 1
) -> list[dict[str, Any]]:
    """What a worker waits for in `ask` with `Bayes(precompute=True)`: from the history of
    `kiln_bayes`, `workers` threads on one study each ask for a trial, run it (sleep `trial_s`,
    then tell its values), and ask again, `reps` times, timing the asks after the first (which
    finds nothing precomputed). The history grows by one per ask; rows keep the starting n."""
    prob, rows = Problem("branin_currin"), []
    for n in sizes:
        study = _bayes_study(prob, n, device)
        study.sampler = sampler = kiln_sampler("bayes", 0, device, precompute=True)
        assert isinstance(sampler, tune.Bayes)
        with ThreadPoolExecutor(workers) as pool:  # evenly spaced: worker w starts w/K late
            futures = [pool.submit(_worker, study, prob, reps, trial_s, w * trial_s / workers)
                       for w in range(workers)]  # fmt: skip
        timed = sorted(ask for f in futures for ask in f.result())
        sampler.precompute = False
        study.ask()  # takes the last precomputed suggestion: no thread left to compete later
        rows += [{"sampler": "bayes", "device": device, "n": n, "rep": rep, "seconds": seconds,
                  "trial_s": trial_s, "workers": workers}
                 for rep, (_, seconds) in enumerate(timed)]  # fmt: skip
    return rows


def _worker(
    study: tune.Study, prob: Problem, reps: int, trial_s: float, delay: float
) -> list[tuple[float, float]]:
    """(start, seconds) of each timed ask."""
    time.sleep(delay)
    trial, out = study.ask(), []
    for _ in range(reps):
        time.sleep(trial_s)
        _tell(study, prob, trial)
        start = time.perf_counter()
        trial = study.ask()
        out.append((start, time.perf_counter() - start))
    return out


def _bayes_study(prob: Problem, n: int, device: str) -> tune.Study:
    """n completed trials: n - 1 Sobol points, then one kiln's Bayes suggested."""
    study = _kiln_study(prob, _history(n - 1))
    random, study.sampler = study.sampler, kiln_sampler("bayes", 0, device)
    _tell(study, prob, study.ask())  # the ask stores its fit on the trial
    study.sampler = random
    return study


def _tell(study: tune.Study, prob: Problem, trial: tune.Trial) -> None:
    x = [trial.params[f"x{i}"] for i in range(prob.dim)]
    study.tell(trial, {f"f{j}": v for j, v in enumerate(prob.evaluate(x).observed.tolist())})


def _kiln_study(prob: Problem, history: list[tuple[list[float], list[float]]]) -> tune.Study:
    study = kiln_study(prob, tune.Random(seed=0))
    for x, y in history:
        study.enqueue({f"x{i}": v for i, v in enumerate(x)})
        study.tell(study.ask(), {f"f{j}": v for j, v in enumerate(y)})
    return study


def optuna_gp(sizes: list[int], reps: int) -> list[dict[str, Any]]:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    dist = optuna.distributions.FloatDistribution(0.0, 1.0)
    rows = []
    for n in sizes:
        frozen = [optuna.trial.create_trial(params={"x0": x[0], "x1": x[1]},
                                            distributions={"x0": dist, "x1": dist}, values=y)
                  for x, y in _history(n)]  # fmt: skip
        for rep in range(reps):
            study = optuna.create_study(directions=["minimize"] * 2,
                                        sampler=optuna.samplers.GPSampler(seed=rep))  # fmt: skip
            study.add_trials(frozen)
            start = time.perf_counter()
            trial = study.ask()
            trial.suggest_float("x0", 0.0, 1.0), trial.suggest_float("x1", 0.0, 1.0)
            rows.append({"sampler": "optuna-gp", "device": "cpu", "n": n, "rep": rep,
                         "seconds": time.perf_counter() - start})  # fmt: skip
    return rows
