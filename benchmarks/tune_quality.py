"""Multi-objective search quality and suggestion latency: kiln.tune's samplers against Optuna's.

On BoTorch's test problems (all minimized; hypervolume against each problem's reference point,
from the noiseless values of the evaluated feasible points):

1. random search runs `--random-budget` evaluations on `--seeds` seeds (1000, 1001, ...); the
   median of its final hypervolumes is each problem's target;
2. every sampler runs on seeds 0, 1, ...: random and Sobol for `--random-budget` evaluations,
   the model-based ones for `--budget` (`--stop-at-target`: the GP-based ones, kiln's Bayes
   and Optuna's GPSampler, only until they reach the target, as counting needs no more);
3. kiln's Bayes (on each of `--latency-devices`) and Optuna's GPSampler time `--latency-reps`
   suggestions on histories of `--latency-sizes` completed trials, alone on the machine, on
   the CPU once per `--latency-threads` count; `--latency-precompute` also times what a worker
   waits for in `study.ask()` with `Bayes(precompute=True)` (rows "DEVICE+precompute").

Runs spread over `--jobs` processes (one torch thread each). Prints Markdown tables: evaluations
to reach the target (median and per seed), final hypervolume and log10 gap to the maximum,
latency p50/p95 (with the Bayes fit and acquisition parts). `--out DIR` also writes
results.json, evals_to_target.csv, hv_curves.csv, latency.csv, summary.md and, with
matplotlib, hv_gap.png and latency.png. Optuna's samplers need `pip install 'kiln[benchmarks]'`;
without optuna their rows say "skipped".

    python benchmarks/tune_quality.py --stop-at-target --budget 60 --out results/tune
    python benchmarks/tune_quality.py --out results/tune   # full curves for every sampler
    python benchmarks/tune_quality.py --smoke --out /tmp/tq  # seconds, for CI

Latency is timed on the GPU too whenever CUDA is present; `--device cuda` also runs the quality
runs' Bayes there (every process then shares the one GPU).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import statistics
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path
from typing import Any

import torch
from _tune import latency, report
from _tune.problems import NAMES, Problem
from _tune.runners import OPTUNA, SAMPLERS, Task, optuna_missing, run

STOPPABLE = ["bayes", "optuna-gp"]  # the expensive ones
# the slowest first, so that the pool's last minutes are not one long run
_COST = {"bayes": 0, "optuna-gp": 1, "optuna-tpe": 2, "random": 3, "sobol": 4, "optuna-nsga2": 5}
SMOKE = ["--problems", "branin_currin,c2dtlz2", "--seeds", "1", "--budget", "6",
         "--random-budget", "12", "--samplers", "random,sobol,bayes,optuna-tpe",
         "--latency-sizes", "8", "--latency-reps", "1", "--latency-devices", "cpu",
         "--latency-threads", "1", "--jobs", "1"]  # fmt: skip


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--problems", default=",".join(NAMES))
    p.add_argument("--samplers", default=",".join(SAMPLERS))
    p.add_argument("--seeds", type=int, default=10)
    p.add_argument("--budget", type=int, default=40, help="evaluations per model-based run")
    p.add_argument("--random-budget", type=int, default=200)
    p.add_argument("--stop-at-target", action="store_true",
                   help="end a bayes or optuna-gp run once it reaches the target")  # fmt: skip
    p.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    p.add_argument("--device", default="cpu", help="kiln Bayes in the quality runs")
    p.add_argument("--latency-devices", default=None,
                   help="comma-separated: cpu, cuda, auto (Bayes's default: the CPU below "
                        "gpu_from trials), or none; default cpu, and cuda if present")  # fmt: skip
    p.add_argument("--latency-sizes", default="10,25,50,100,200")
    p.add_argument("--latency-reps", type=int, default=10)
    p.add_argument("--latency-threads", default=None,
                   help="comma-separated torch CPU thread counts to time with; default 1 "
                        "and torch's default (all cores)")  # fmt: skip
    p.add_argument("--latency-precompute", action="store_true",
                   help="also time kiln's Bayes(precompute=True) in a running study: "
                        "--latency-workers threads ask for a trial, run it for "
                        "--latency-trial-s, tell it and ask again, --latency-reps times each, "
                        "while the next suggestion is computed; the history grows by one per "
                        "ask from --latency-sizes (200, 201, ...)")  # fmt: skip
    p.add_argument("--latency-trial-s", type=float, default=2.0,
                   help="seconds each trial runs with --latency-precompute")  # fmt: skip
    p.add_argument("--latency-workers", type=int, default=1,
                   help="workers asking on one study with --latency-precompute")  # fmt: skip
    p.add_argument("--out", type=Path, help="folder for JSON, CSV, Markdown and PNG results")
    p.add_argument("--json", type=Path, help="write results.json here too")
    p.add_argument("--smoke", action="store_true", help=f"shorthand for {' '.join(SMOKE)}")
    argv = sys.argv[1:] if argv is None else argv
    args = p.parse_args((SMOKE if "--smoke" in argv else []) + argv)
    args.problems, args.samplers = args.problems.split(","), args.samplers.split(",")
    if unknown := [n for n in args.samplers if n not in SAMPLERS]:
        p.error(f"unknown samplers {unknown}; known: {', '.join(SAMPLERS)}")
    if unknown := [n for n in args.problems if n not in NAMES]:
        p.error(f"unknown problems {unknown}; known: {', '.join(NAMES)}")
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        p.error(f"--device {args.device} needs CUDA, and torch {torch.__version__} sees none")
    default = "cpu,cuda" if torch.cuda.is_available() else "cpu"
    devices = (args.latency_devices or default).split(",")
    args.latency_devices = [] if devices == ["none"] else devices
    if bad := [d for d in args.latency_devices if d.split(":")[0] not in ("cpu", "cuda", "auto")]:
        p.error(f"unknown --latency-devices {bad}: cpu, cuda, cuda:N, auto, or none (no timing)")
    args.latency_sizes = [int(n) for n in args.latency_sizes.split(",")]
    if args.latency_trial_s < 0 or args.latency_workers < 1:
        p.error("--latency-trial-s must be >= 0 and --latency-workers >= 1. Received: "
                f"{args.latency_trial_s} and {args.latency_workers}")  # fmt: skip
    threads = args.latency_threads or f"1,{torch.get_num_threads()}"
    args.latency_threads = list(dict.fromkeys(int(t) for t in threads.split(",")))
    return args


def run_all(tasks: list[Task], jobs: int) -> list[dict[str, Any]]:
    """run(task) for every task over `jobs` processes (spawned: CUDA-safe), in task order."""
    if jobs <= 1:
        return [run(t) for t in tasks]
    order = sorted(range(len(tasks)), key=lambda i: _COST[tasks[i].sampler])
    results: list[dict[str, Any]] = [{}] * len(tasks)
    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(jobs, mp_context=ctx) as pool:
        futures = {pool.submit(run, tasks[i]): i for i in order}
        for done, future in enumerate(as_completed(futures), 1):
            results[futures[future]] = future.result()
            print(f"\r  {done}/{len(tasks)} runs", end="", file=sys.stderr, flush=True)
    print(file=sys.stderr)
    return results


def quality(args: argparse.Namespace) -> dict[str, Any]:
    skip = optuna_missing()
    names = [n for n in args.samplers if not (skip and n in OPTUNA)]
    targets = [Task("random", p, 1000 + s, args.random_budget) for p in args.problems
               for s in range(args.seeds)]  # fmt: skip
    finals: dict[str, list[float]] = {p: [] for p in args.problems}
    for task, r in zip(targets, run_all(targets, args.jobs)):
        finals[task.problem].append(r["hv"][-1])
    target = {p: statistics.median(v) for p, v in finals.items()}
    stop = STOPPABLE if args.stop_at_target else []
    tasks = [Task(n, p, s, args.random_budget if n in ("random", "sobol") else args.budget,
                  target[p] if n in stop else None, args.device)
             for p in args.problems for n in names for s in range(args.seeds)]  # fmt: skip
    out: dict[str, Any] = {"problems": {}, "runs": {p: {} for p in args.problems}}
    for task, r in zip(tasks, run_all(tasks, args.jobs)):
        out["runs"][task.problem].setdefault(task.sampler, []).append(r)
    for p in args.problems:
        max_hv = Problem(p).max_hv
        samplers = {n: report.summarize(out["runs"][p][n], target[p], max_hv, n in stop)
                    for n in names}  # fmt: skip
        samplers |= {n: {"skipped": skip} for n in args.samplers if n not in names}
        out["problems"][p] = {"target_hv": target[p], "max_hv": max_hv,
                              "random_finals": finals[p], "samplers": samplers}  # fmt: skip
    return out


def latencies(args: argparse.Namespace) -> list[dict[str, Any]]:
    """Every CPU row once per thread count (labelled "cpu/Nt"); GPU rows with the most."""
    rows, sizes, reps = [], args.latency_sizes, args.latency_reps
    if not args.latency_devices:  # --latency-devices none
        return rows
    for threads in args.latency_threads:
        torch.set_num_threads(threads)
        cpu = f"cpu/{threads}t"
        if "bayes" in args.samplers and "cpu" in args.latency_devices:
            rows += _kiln_bayes(args, "cpu", cpu)
        if "optuna-gp" in args.samplers and not optuna_missing():
            rows += [r | {"device": cpu} for r in latency.optuna_gp(sizes, reps)]
    for device in (d for d in args.latency_devices if d != "cpu"):
        if "bayes" in args.samplers:
            rows += _kiln_bayes(args, device, device)
    return rows


def _kiln_bayes(args: argparse.Namespace, device: str, label: str) -> list[dict[str, Any]]:
    """Suggestion times labelled `label`, then (--latency-precompute) the waits of asks,
    labelled `label`+precompute (and /Kw with K > 1 workers)."""
    sizes, reps = args.latency_sizes, args.latency_reps
    rows = [r | {"device": label} for r in latency.kiln_bayes(sizes, reps, device)]
    if args.latency_precompute:
        k = args.latency_workers
        asks = latency.kiln_bayes_asks(sizes, reps, device, args.latency_trial_s, k)
        label += "+precompute" + (f"/{k}w" if k > 1 else "")
        rows += [r | {"device": label} for r in asks]
    return rows


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse(argv)
    device = torch.cuda.get_device_name() if torch.cuda.is_available() else "no GPU"
    header = (f"# tune_quality: {os.cpu_count()} CPUs, {device}, torch {torch.__version__}, "
              f"{args.seeds} seeds, budget {args.budget}, random budget {args.random_budget}, "
              f"{args.jobs} jobs, Bayes on {args.device}")  # fmt: skip
    print(header, flush=True)
    start = time.perf_counter()
    results = quality(args)
    print(f"  quality runs: {time.perf_counter() - start:.0f} s", file=sys.stderr)
    results["args"] = {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}
    lat_start = time.perf_counter()
    results["latency"], results["seconds"] = [], {"quality": lat_start - start}
    if args.out:  # the quality results first: a run cut short in the latency part keeps them
        args.out.mkdir(parents=True, exist_ok=True)
        text = header + "\n" + report.markdown(results, args.budget, args.random_budget)
        (args.out / "summary.md").write_text(text + "\n")
        (args.out / "results.json").write_text(json.dumps(results))
    raw = latencies(args)
    results["latency"] = report.latency_rows(raw)
    results["seconds"]["latency"] = time.perf_counter() - lat_start
    text = header + "\n" + report.markdown(results, args.budget, args.random_budget)
    print(text[len(header) :], flush=True)
    if args.out:
        (args.out / "summary.md").write_text(text + "\n")
        report.write_csv(args.out, results, raw)
        (args.out / "results.json").write_text(json.dumps(results))
        plots = report.plot(args.out, results)
        print(
            f"\nwrote {args.out}/: results.json, summary.md, CSV files"
            f"{', ' + ', '.join(plots) if plots else ' (no plots: matplotlib missing)'}"
        )
    if args.json:
        args.json.write_text(json.dumps(results))
    return results


if __name__ == "__main__":
    main()
