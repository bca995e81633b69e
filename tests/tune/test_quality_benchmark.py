"""benchmarks/tune_quality.py runs end to end on a CPU at a tiny size and its numbers add up."""

import csv
import json
import math
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"
SCRIPT = BENCHMARKS / "tune_quality.py"


@pytest.fixture
def bench(monkeypatch):
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    import tune_quality

    return tune_quality


def test_smoke_run_writes_consistent_tables_csv_and_json(tmp_path):
    run = subprocess.run([sys.executable, str(SCRIPT), "--smoke", "--out", str(tmp_path)],
                         capture_output=True, text=True, timeout=300)  # fmt: skip
    assert run.returncode == 0, run.stdout + run.stderr[-3000:]
    results = json.loads((tmp_path / "results.json").read_text())
    with open(tmp_path / "evals_to_target.csv") as f:
        reach_rows = list(csv.DictReader(f))
    for problem in ("branin_currin", "c2dtlz2"):
        res = results["problems"][problem]
        assert 0 < res["target_hv"] <= res["max_hv"]
        assert res["target_hv"] == sorted(res["random_finals"])[0]  # the median of one seed
        for name, budget in (("random", 12), ("sobol", 12), ("bayes", 6)):
            curve = results["runs"][problem][name][0]["hv"]
            assert len(curve) == budget and curve == sorted(curve)
            s = res["samplers"][name]
            assert s["final_hv"] == curve[-1] and s["fallbacks"] == 0
            reach = s["evals_to_target"][0]
            assert (reach is None) == (curve[-1] < res["target_hv"])
            if reach is not None:  # the first evaluation at (or within rounding of) the target
                assert curve[reach - 1] >= res["target_hv"] * (1 - 1e-9) > [0, *curve][reach - 1]
            row = next(r for r in reach_rows if (r["problem"], r["sampler"]) == (problem, name))
            assert row["evals_to_target"] == ("" if reach is None else str(reach))
        tpe = res["samplers"]["optuna-tpe"]
        assert "final_hv" in tpe or "pip install" in tpe["skipped"]
        assert f"### {problem}" in run.stdout and "| bayes |" in run.stdout
    (latency,) = results["latency"]
    assert (latency["sampler"], latency["device"], latency["n"]) == ("bayes", "cpu/1t", 8)
    assert 0 < latency["fit_p50"] + latency["acquisition_p50"] <= latency["seconds_p50"]
    assert (tmp_path / "summary.md").read_text().count("| bayes | cpu/1t | 8 |") == 1


def test_hypervolume_trace_matches_recomputing_from_scratch(bench):
    from _tune.problems import Evaluation, HypervolumeTrace, Problem

    prob, rng = Problem("branin_currin"), np.random.default_rng(0)
    trace, seen = HypervolumeTrace(prob), []
    for _ in range(40):
        ev = prob.evaluate(rng.random(2).tolist())
        feasible = bool(rng.random() < 0.8)  # some points infeasible: they never count
        trace.add(Evaluation(ev.observed, ev.true, None, feasible))
        seen += [ev.true] if feasible else []
        assert trace.values[-1] == pytest.approx(prob.hypervolume(seen), rel=1e-12)


def test_report_arithmetic(bench):
    from _tune import report

    assert report.to_reach([0.0, 1.0, 2.0, 3.0], 2.0) == 3
    assert report.to_reach([0.0, 1.0], 2.0) is None
    assert report.median_evals([3, None, 5]) == 5 and report.median_evals([3, 5, 8, 9]) == 6.5
    assert report.median_evals([3, None, None, 9]) is None  # more than the budget
    assert report.percentile(list(range(1, 101)), 95) == 95
    assert report.percentile([0.3, 0.1, 0.2], 50) == 0.2
    # three runs stopped at the target after 1, 2 and 3 evaluations, and one that ran on:
    # drawn while fewer than half had stopped, a stopped run counting as better than any other
    runs = [{"hv": [9.0]}, {"hv": [1.0, 9.0]}, {"hv": [2.0, 3.0, 9.0]}, {"hv": [0.0, 4.0, 5.0]}]
    gaps = report._median_gaps(runs, max_hv=10.0)
    # after 1: gaps 0, log 9, log 8, log 10; after 2: -inf, 0, log 7, log 6; then 2 of 4 stopped
    assert gaps == pytest.approx([(math.log10(8) + math.log10(9)) / 2, math.log10(6) / 2])


def test_unknown_sampler_names_the_known_ones(bench, capsys):
    with pytest.raises(SystemExit):
        bench.main(["--samplers", "bayes,hyperopt"])
    err = capsys.readouterr().err
    assert "hyperopt" in err and "optuna-nsga2" in err


def test_a_run_with_a_target_stops_at_the_evaluation_that_reaches_it(bench):
    from _tune.report import to_reach
    from _tune.runners import Task, run

    full = run(Task("sobol", "zdt3", seed=0, budget=30))["hv"]
    target = full[-1] * 0.999  # reached somewhere before the end
    stopped = run(Task("sobol", "zdt3", seed=0, budget=30, target=target))["hv"]
    assert len(stopped) == to_reach(full, target) < 30 and stopped == full[: len(stopped)]


def test_precompute_hides_the_suggestion_behind_the_running_trial(bench):
    """A trial that runs longer than a suggestion takes: the next ask takes the suggestion
    computed meanwhile, so it waits a fraction of what computing one takes (measured alike)."""
    from _tune import report

    threads = threading.active_count()
    args = bench.parse(["--samplers", "bayes", "--latency-sizes", "12", "--latency-reps", "3",
                        "--latency-devices", "cpu", "--latency-threads", "1",
                        "--latency-precompute", "--latency-trial-s", "1.0"])  # fmt: skip
    raw, pre = report.latency_rows(bench.latencies(args))
    assert (raw["device"], raw["n"], raw["reps"]) == ("cpu/1t", 12, 3)
    assert (pre["device"], pre["n"], pre["reps"]) == ("cpu/1t+precompute", 12, 3)
    assert (pre["trial_s"], pre["workers"]) == (1.0, 1) and "fit_p50" not in pre
    assert pre["seconds_p95"] < raw["seconds_p50"] / 5  # without precompute: about equal
    assert threading.active_count() == threads  # no suggestion left computing
    text = report.markdown({"problems": {}, "latency": [raw, pre]}, 1, 1)
    assert "| bayes | cpu/1t+precompute | 12 |" in text and "trials of 1 s" in text
