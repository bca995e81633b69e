"""One ask/tell run of one sampler on one problem: the hypervolume after every evaluation and
the time of every suggestion. Runs inside a worker process, so everything here is picklable."""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from _tune.problems import HypervolumeTrace, Problem

from kiln import tune

KILN = ["bayes", "random", "sobol"]
OPTUNA = ["optuna-tpe", "optuna-gp", "optuna-nsga2"]
SAMPLERS = KILN + OPTUNA


@dataclass
class Task:
    sampler: str
    problem: str
    seed: int
    budget: int
    target: float | None = None  # stop once the hypervolume reaches it (None: run the budget)
    device: str = "cpu"  # kiln Bayes only
    threads: int = 1


def optuna_missing() -> str | None:
    try:
        import optuna  # noqa: F401
    except ImportError:
        return "optuna not installed (pip install 'kiln[benchmarks]')"
    return None


def kiln_sampler(
    name: str, seed: int, device: str = "cpu", precompute: bool = False
) -> tune.BaseSampler:
    """`device` "auto": Bayes's own choice (the CPU for small histories, see `gpu_from`)."""
    if name == "bayes":
        chosen = None if device == "auto" else device
        return tune.Bayes(seed=seed, device=chosen, precompute=precompute)
    return {"random": tune.Random, "sobol": tune.Sobol}[name](seed=seed)


def kiln_study(prob: Problem, sampler: tune.BaseSampler) -> tune.Study:
    space = {f"x{i}": tune.Float(lo, hi) for i, (lo, hi) in enumerate(prob.bounds)}
    objectives = {f"f{j}": "min" for j in range(prob.m)}
    thresholds = {f"f{j}": float(prob.ref[j]) for j in range(prob.m)}
    constraints = {"slack": (">=", 0.0)} if prob.constrained else None
    return tune.Study(space, objectives, thresholds=thresholds, constraints=constraints,
                      sampler=sampler)  # fmt: skip


def run(task: Task) -> dict[str, Any]:
    """{"hv": [...], "latency": [[completed trials, seconds], ...], "fallbacks": int, ...}"""
    torch.set_num_threads(task.threads)
    prob = Problem(task.problem, seed=task.seed)
    loop = _kiln_loop if task.sampler in KILN else _optuna_loop
    start, cpu = time.perf_counter(), time.process_time()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = loop(task, prob)
    fallbacks = sum("fell back" in str(w.message) for w in caught)
    return {**out, "fallbacks": fallbacks, "seconds": time.perf_counter() - start,
            "cpu_seconds": time.process_time() - cpu}  # fmt: skip


def _until(task: Task, trace: HypervolumeTrace) -> Callable[[], bool]:
    def more() -> bool:
        if len(trace.values) >= task.budget:
            return False
        return task.target is None or not trace.values or trace.values[-1] < task.target

    return more


def _kiln_loop(task: Task, prob: Problem) -> dict[str, Any]:
    sampler = kiln_sampler(task.sampler, task.seed, task.device)
    study, trace, latency = kiln_study(prob, sampler), HypervolumeTrace(prob), []
    more = _until(task, trace)
    while more():
        start = time.perf_counter()
        trial = study.ask()
        latency.append([len(trace.values), time.perf_counter() - start])
        ev = prob.evaluate([trial.params[f"x{i}"] for i in range(prob.dim)])
        values = {f"f{j}": float(ev.observed[j]) for j in range(prob.m)}
        if ev.slack is not None:
            values["slack"] = ev.slack
        study.tell(trial, values)
        trace.add(ev)
    return {"hv": trace.values, "latency": latency}


def _optuna_loop(task: Task, prob: Problem) -> dict[str, Any]:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    # Optuna >= 5 takes constraints through trial.set_constraint; older ones a callback
    new_api = hasattr(optuna.trial.Trial, "set_constraint")
    cons = (lambda t: [-t.user_attrs["slack"]]) if prob.constrained and not new_api else None
    kinds = {"optuna-tpe": optuna.samplers.TPESampler, "optuna-gp": optuna.samplers.GPSampler,
             "optuna-nsga2": optuna.samplers.NSGAIISampler}  # fmt: skip
    sampler = kinds[task.sampler](seed=task.seed, constraints_func=cons)
    study = optuna.create_study(directions=["minimize"] * prob.m, sampler=sampler)
    trace, latency = HypervolumeTrace(prob), []
    more = _until(task, trace)
    while more():
        start = time.perf_counter()
        trial = study.ask()  # relative sampling (the model) runs at the first suggest
        x = [trial.suggest_float(f"x{i}", lo, hi) for i, (lo, hi) in enumerate(prob.bounds)]
        latency.append([len(trace.values), time.perf_counter() - start])
        ev = prob.evaluate(x)
        if ev.slack is not None:
            trial.set_user_attr("slack", ev.slack)
            if new_api:
                trial.set_constraint("slack", -ev.slack)
        study.tell(trial, [float(v) for v in ev.observed])
        trace.add(ev)
    return {"hv": trace.values, "latency": latency}
