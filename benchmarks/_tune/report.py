"""Summaries of the runs: evaluations to the target, log hypervolume gaps, latency percentiles;
as Markdown tables, CSV files and PNG plots (the plots only where matplotlib is installed)."""

from __future__ import annotations

import csv
import math
import statistics
from pathlib import Path
from typing import Any


def to_reach(hv: list[float], target: float) -> int | None:
    """The number of evaluations after which the hypervolume first reaches `target`."""
    return next((i + 1 for i, v in enumerate(hv) if v >= target * (1 - 1e-9)), None)


def median_evals(reach: list[int | None]) -> float | None:
    """Median over seeds, where a seed that never reached the target counts as infinitely
    many evaluations; None when the median is such a seed."""
    median = statistics.median(math.inf if r is None else r for r in reach)
    return median if math.isfinite(median) else None


def percentile(values: list[float], q: float) -> float:
    """The nearest-rank percentile (q in 0..100) of a non-empty list."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)]


def log_gap(hv: float, max_hv: float) -> float:
    return math.log10(max(max_hv - hv, 1e-12))


def summarize(
    runs: list[dict[str, Any]], target: float, max_hv: float, stopped: bool = False
) -> dict[str, Any]:
    """One sampler on one problem, from its runs (one per seed); `stopped`: the runs ended at
    the target, so they have no final hypervolume to compare."""
    reach = [to_reach(r["hv"], target) for r in runs]
    final = None if stopped else statistics.median(r["hv"][-1] for r in runs)
    return {"evals_to_target": reach, "median_evals": median_evals(reach), "final_hv": final,
            "final_log_gap": None if final is None else log_gap(final, max_hv),
            "fallbacks": sum(r["fallbacks"] for r in runs),
            "seconds": sum(r["seconds"] for r in runs)}  # fmt: skip


def latency_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """p50/p95 of the suggestion time (and of its fit / acquisition parts) per sampler,
    device and history size; a precompute row keeps its trial time and worker count."""
    groups: dict[tuple[str, str, int], list[dict[str, Any]]] = {}
    for row in rows:
        groups.setdefault((row["sampler"], row["device"], row["n"]), []).append(row)
    out = []
    for (sampler, device, n), rs in sorted(groups.items()):
        summary: dict[str, Any] = {"sampler": sampler, "device": device, "n": n, "reps": len(rs)}
        summary |= {k: rs[0][k] for k in ("trial_s", "workers") if k in rs[0]}
        for key in ("seconds", "fit", "acquisition"):
            if all(key in r for r in rs):
                summary[f"{key}_p50"] = percentile([r[key] for r in rs], 50)
                summary[f"{key}_p95"] = percentile([r[key] for r in rs], 95)
        out.append(summary)
    return out


def markdown(results: dict[str, Any], budget: int, random_budget: int) -> str:
    lines = []
    for problem, res in results["problems"].items():
        lines += [f"\n### {problem}: evaluations to reach random search's {random_budget}-"
                  f"evaluation hypervolume ({res['target_hv']:.4g} of max {res['max_hv']:.4g})\n",
                  "| sampler | median evals | per seed | final HV (median) | log10 gap |",
                  "|---|---|---|---|---|"]  # fmt: skip
        for name, s in res["samplers"].items():
            if "skipped" in s:
                lines.append(f"| {name} | skipped: {s['skipped']} | | | |")
                continue
            cap = max(len(r["hv"]) for r in results["runs"][problem][name])
            med = f"> {cap}" if s["median_evals"] is None else f"{s['median_evals']:g}"
            seeds = ", ".join(str(r) if r is not None else f">{cap}" for r in s["evals_to_target"])
            warn = f" ({s['fallbacks']} random fallbacks)" if s["fallbacks"] else ""
            final = ("stopped at the target | " if s["final_hv"] is None
                     else f"{s['final_hv']:.4g} | {s['final_log_gap']:.2f}")  # fmt: skip
            lines.append(f"| {name} | {med} | {seeds}{warn} | {final} |")
    if results["latency"]:
        trial_s = {r["trial_s"] for r in results["latency"] if "trial_s" in r}
        precompute = (f"; +precompute: a worker's wait in ask with Bayes(precompute=True), "
                      f"trials of {', '.join(f'{t:g}' for t in sorted(trial_s))} s, the history "
                      f"growing by one per ask from n") if trial_s else ""  # fmt: skip
        lines += ["\n### Suggestion latency, BraninCurrin (2 objectives), seconds "
                  f"(cpu/Nt: N torch threads{precompute})\n",
                  "| sampler | device | completed trials | p50 | p95 | fit p50 | acquisition p50 |",
                  "|---|---|---|---|---|---|---|"]  # fmt: skip
        for r in results["latency"]:
            fit = f"{r['fit_p50']:.3f}" if "fit_p50" in r else ""
            acq = f"{r['acquisition_p50']:.3f}" if "acquisition_p50" in r else ""
            lines.append(f"| {r['sampler']} | {r['device']} | {r['n']} | {r['seconds_p50']:.3f} "
                         f"| {r['seconds_p95']:.3f} | {fit} | {acq} |")  # fmt: skip
    return "\n".join(lines)


def write_csv(out: Path, results: dict[str, Any], latency_raw: list[dict[str, Any]]) -> None:
    with open(out / "evals_to_target.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["problem", "sampler", "seed", "evals_to_target", "target_hv", "final_hv"])
        for problem, by_sampler in results["runs"].items():
            target = results["problems"][problem]["target_hv"]
            for name, runs in by_sampler.items():
                for seed, r in enumerate(runs):
                    w.writerow([problem, name, seed, to_reach(r["hv"], target), target,
                                r["hv"][-1]])  # fmt: skip
    with open(out / "hv_curves.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["problem", "sampler", "seed", "evaluations", "hv", "log10_gap"])
        for problem, by_sampler in results["runs"].items():
            max_hv = results["problems"][problem]["max_hv"]
            for name, runs in by_sampler.items():
                for seed, r in enumerate(runs):
                    for i, hv in enumerate(r["hv"]):
                        w.writerow([problem, name, seed, i + 1, hv, log_gap(hv, max_hv)])
    if latency_raw:
        with open(out / "latency.csv", "w", newline="") as f:
            keys = ["sampler", "device", "n", "rep", "seconds", "fit", "acquisition"]
            w = csv.DictWriter(f, keys, extrasaction="ignore")
            w.writeheader()
            w.writerows(latency_raw)


def _median_gaps(runs: list[dict[str, Any]], max_hv: float) -> list[float]:
    """The median log10 gap after each evaluation, while fewer than half of the runs have
    stopped (at the target): a stopped run counts as better than any running one, which keeps
    the median exact."""
    out = []
    for i in range(max(len(r["hv"]) for r in runs)):
        if 2 * sum(len(r["hv"]) <= i for r in runs) >= len(runs):
            break
        out.append(statistics.median(log_gap(r["hv"][i], max_hv) if i < len(r["hv"]) else -math.inf
                                     for r in runs))  # fmt: skip
    return out


def plot(out: Path, results: dict[str, Any]) -> list[str]:
    """hv_gap.png (median log10 hypervolume gap per problem) and latency.png; the names of
    the files written (none without matplotlib)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return []
    problems = list(results["runs"])
    fig, axes = plt.subplots(1, len(problems), figsize=(4.2 * len(problems), 3.6), squeeze=False)
    for ax, problem in zip(axes[0], problems):
        res = results["problems"][problem]
        for name, runs in results["runs"][problem].items():
            curve = _median_gaps(runs, res["max_hv"])
            ax.plot(range(1, len(curve) + 1), curve, label=name)
        ax.axhline(log_gap(res["target_hv"], res["max_hv"]), color="gray", ls=":", lw=1)
        ax.set(title=problem, xlabel="evaluations", xscale="log", ylabel="log10 HV gap (median)")
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out / "hv_gap.png", dpi=110)
    written = ["hv_gap.png"]
    if results["latency"]:
        fig, ax = plt.subplots(figsize=(5, 3.6))
        for key in sorted({(r["sampler"], r["device"]) for r in results["latency"]}):
            rs = [r for r in results["latency"] if (r["sampler"], r["device"]) == key]
            ax.plot([r["n"] for r in rs], [r["seconds_p95"] for r in rs], "o-", label=" ".join(key))
        ax.set(xlabel="completed trials", ylabel="p95 suggestion time (s)", yscale="log")
        ax.legend(fontsize=7)
        fig.tight_layout()
        fig.savefig(out / "latency.png", dpi=110)
        written.append("latency.png")
    plt.close("all")
    return written
