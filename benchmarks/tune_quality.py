"""Multi-objective search quality and suggestion latency: kiln.tune's samplers against Optuna's.

On BoTorch's test problems (all minimized; hypervolume against each problem's reference point,
from the noiseless values of the evaluated points, feasible ones only), for each sampler and
seed it runs an ask/tell loop and records the hypervolume after every evaluation and the time
of every suggestion. It prints, per problem, the evaluations each sampler needs to reach the
hypervolume random search has after `--random-budget` evaluations (median over seeds), the
final log10 hypervolume gap, and suggestion latency p50/p95 by number of completed trials.
Optuna's TPE, GPSampler and NSGA-II run when optuna is installed (pip install 'kiln[benchmarks]');
otherwise their rows say "skipped".

    python benchmarks/tune_quality.py                                   # the full comparison
    python benchmarks/tune_quality.py --problems branin_currin --seeds 1 --budget 8 \\
        --random-budget 20 --samplers random,sobol,bayes               # a CPU smoke run
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from kiln import tune

Runner = Callable[[dict[str, Any], int, int], dict[str, Any]]


def problems() -> dict[str, Callable[[], Any]]:
    from botorch.test_functions import multi_objective as mo

    return {
        "branin_currin": lambda: mo.BraninCurrin(),
        "zdt3": lambda: mo.ZDT3(dim=4),
        "dtlz2": lambda: mo.DTLZ2(dim=6, num_objectives=2),
        "c2dtlz2": lambda: mo.C2DTLZ2(dim=4, num_objectives=2),
        "noisy_branin_currin": lambda: mo.BraninCurrin(noise_std=[5.0, 0.5]),
    }


class Problem:
    def __init__(self, name: str) -> None:
        self.name, self.f = name, problems()[name]()
        self.dim, self.m = self.f.dim, self.f.num_objectives
        self.bounds = self.f.bounds.double()
        self.ref = self.f.ref_point.double().numpy()
        self.constrained = hasattr(self.f, "evaluate_slack")

    def evaluate(self, x: list[float]) -> tuple[np.ndarray, np.ndarray, bool]:
        """(observed values, noiseless values, feasible)."""
        xt = torch.tensor([x], dtype=torch.float64)
        observed = self.f(xt)[0].numpy()
        true = self.f.evaluate_true(xt)[0].numpy()
        feasible = bool((self.f.evaluate_slack(xt) >= 0).all()) if self.constrained else True
        return observed, true, feasible

    def hypervolume(self, points: list[np.ndarray]) -> float:
        if not points:
            return 0.0
        return tune.hypervolume(-np.stack(points), -self.ref)


def _kiln(sampler: Callable[[int], tune.BaseSampler]) -> Runner:
    def run(p: dict[str, Any], seed: int, budget: int) -> dict[str, Any]:
        prob: Problem = p["problem"]
        space = {f"x{i}": tune.Float(float(lo), float(hi)) for i, (lo, hi) in
                 enumerate(prob.bounds.T.tolist())}  # fmt: skip
        objectives = {f"f{j}": "min" for j in range(prob.m)}
        thresholds = {f"f{j}": float(prob.ref[j]) for j in range(prob.m)}
        constraints = {"slack": (">=", 0.0)} if prob.constrained else None
        study = tune.Study(space, objectives, thresholds=thresholds, constraints=constraints,
                           sampler=sampler(seed))  # fmt: skip
        hv, latency, front = [], [], []
        for _ in range(budget):
            start = time.perf_counter()
            trial = study.ask()
            latency.append((len(study.completed()), time.perf_counter() - start))
            x = [trial.params[f"x{i}"] for i in range(prob.dim)]
            observed, true, feasible = prob.evaluate(x)
            values = {f"f{j}": float(observed[j]) for j in range(prob.m)}
            if prob.constrained:
                xt = torch.tensor([x], dtype=torch.float64)
                values["slack"] = float(prob.f.evaluate_slack(xt).min())
            study.tell(trial, values)
            if feasible:
                front.append(true)
            hv.append(prob.hypervolume(front))
        return {"hv": hv, "latency": latency}

    return run


def _optuna(kind: str) -> Runner | str:
    try:
        import optuna
    except ImportError:
        return "optuna not installed (pip install 'kiln[benchmarks]')"
    optuna.logging.set_verbosity(optuna.logging.WARNING)

    def run(p: dict[str, Any], seed: int, budget: int) -> dict[str, Any]:
        prob: Problem = p["problem"]
        # Optuna 5 takes constraints through trial.set_constraint; older ones a callback
        new_api = hasattr(optuna.trial.Trial, "set_constraint")
        cons = (lambda t: [-t.user_attrs["slack"]]) if prob.constrained and not new_api else None
        samplers = {
            "tpe": lambda: optuna.samplers.TPESampler(seed=seed, constraints_func=cons),
            "gp": lambda: optuna.samplers.GPSampler(seed=seed, constraints_func=cons),
            "nsga2": lambda: optuna.samplers.NSGAIISampler(seed=seed, constraints_func=cons),
        }
        study = optuna.create_study(directions=["minimize"] * prob.m, sampler=samplers[kind]())
        hv, latency, front = [], [], []
        for i in range(budget):
            start = time.perf_counter()
            trial = study.ask()
            x = [trial.suggest_float(f"x{k}", float(lo), float(hi))
                 for k, (lo, hi) in enumerate(prob.bounds.T.tolist())]  # fmt: skip
            latency.append((i, time.perf_counter() - start))
            observed, true, feasible = prob.evaluate(x)
            if prob.constrained:
                xt = torch.tensor([x], dtype=torch.float64)
                slack = float(prob.f.evaluate_slack(xt).min())
                trial.set_user_attr("slack", slack)
                if new_api:
                    trial.set_constraint("slack", -slack)
            study.tell(trial, [float(v) for v in observed])
            if feasible:
                front.append(true)
            hv.append(prob.hypervolume(front))
        return {"hv": hv, "latency": latency}

    return run


def samplers() -> dict[str, Runner | str]:
    return {
        "bayes": _kiln(lambda seed: tune.Bayes(seed=seed)),
        "random": _kiln(lambda seed: tune.Random(seed=seed)),
        "sobol": _kiln(lambda seed: tune.Sobol(seed=seed)),
        "optuna-tpe": _optuna("tpe"),
        "optuna-gp": _optuna("gp"),
        "optuna-nsga2": _optuna("nsga2"),
    }


def _to_reach(hv: list[float], target: float) -> int | None:
    return next((i + 1 for i, v in enumerate(hv) if v >= target * (1 - 1e-9)), None)


def _latency_table(latency: list[tuple[int, float]]) -> dict[str, dict[str, float]]:
    out = {}
    for lo, hi in [(0, 10), (10, 25), (25, 50), (50, 100), (100, 200), (200, 10**9)]:
        ts = sorted(t for n, t in latency if lo <= n < hi)
        if ts:
            out[f"{lo}-{hi if hi < 10**9 else ''}"] = {
                "p50": ts[len(ts) // 2], "p95": ts[min(len(ts) - 1, math.ceil(0.95 * len(ts)) - 1)]
            }  # fmt: skip
    return out


def bench(problem: str, names: list[str], seeds: int, budget: int, random_budget: int) -> dict:
    prob = Problem(problem)
    runners = samplers()
    targets = [runners["random"]({"problem": prob}, 1000 + s, random_budget)["hv"][-1]  # type: ignore[operator]
               for s in range(seeds)]  # fmt: skip
    target = statistics.median(targets)
    max_hv = float(prob.f.max_hv) if hasattr(prob.f, "_max_hv") and prob.f._max_hv else None
    result: dict[str, Any] = {"target_hv": target, "max_hv": max_hv, "samplers": {}}
    for name in names:
        runner = runners[name]
        if isinstance(runner, str):
            result["samplers"][name] = {"status": "skipped", "reason": runner}
            continue
        runs = [runner({"problem": prob}, s, budget) for s in range(seeds)]
        reach = [_to_reach(r["hv"], target) for r in runs]
        ok = sorted(r for r in reach if r is not None)
        median = ok[len(reach) // 2] if len(ok) > len(reach) // 2 else None
        final = statistics.median(r["hv"][-1] for r in runs)
        result["samplers"][name] = {
            "status": "ok", "evals_to_target": reach, "median_evals": median,
            "final_hv": final, "hv_curves": [r["hv"] for r in runs],
            "latency": _latency_table([x for r in runs for x in r["latency"]]),
        }  # fmt: skip
    return result


def _print(problem: str, res: dict, budget: int, random_budget: int) -> None:
    print(f"\n### {problem}: evaluations to reach random search's {random_budget}-evaluation "
          f"hypervolume ({res['target_hv']:.4g}; max {res['max_hv'] or 'unknown'})\n")  # fmt: skip
    print("| sampler | median evals | per seed | final HV | log10 gap | latency p50 / p95 (s) |")
    print("|---|---|---|---|---|---|")
    for name, r in res["samplers"].items():
        if r["status"] != "ok":
            print(f"| {name} | skipped: {r['reason']} | | | | |")
            continue
        med = r["median_evals"] if r["median_evals"] is not None else f"> {budget}"
        seeds = ", ".join(str(x) if x is not None else f">{budget}" for x in r["evals_to_target"])
        gap = (f"{math.log10(max(res['max_hv'] - r['final_hv'], 1e-12)):.2f}"
               if res["max_hv"] else "")  # fmt: skip
        lat = "; ".join(f"{k}: {v['p50']:.3f}/{v['p95']:.3f}" for k, v in r["latency"].items())
        print(f"| {name} | {med} | {seeds} | {r['final_hv']:.4g} | {gap} | {lat} |")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--problems", default=",".join(problems()))
    parser.add_argument("--samplers", default=",".join(samplers()))
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--budget", type=int, default=60, help="evaluations per model-based run")
    parser.add_argument("--random-budget", type=int, default=200)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--json", help="write every number (curves included) to this file")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    names = args.samplers.split(",")
    if unknown := [n for n in names if n not in samplers()]:
        parser.error(f"unknown samplers {unknown}; known: {', '.join(samplers())}")
    if unknown := [p for p in args.problems.split(",") if p not in problems()]:
        parser.error(f"unknown problems {unknown}; known: {', '.join(problems())}")
    device = torch.cuda.get_device_name() if torch.cuda.is_available() else "CPU"
    print(f"# tune_quality: {device}, torch {torch.__version__}, {args.seeds} seeds, "
          f"budget {args.budget}, random budget {args.random_budget}")  # fmt: skip
    out = {}
    for problem in args.problems.split(","):
        out[problem] = bench(problem, names, args.seeds, args.budget, args.random_budget)
        _print(problem, out[problem], args.budget, args.random_budget)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f)


if __name__ == "__main__":
    main()
