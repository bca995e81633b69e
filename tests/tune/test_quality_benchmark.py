"""benchmarks/tune_quality.py runs end to end on a CPU at a tiny size and its numbers add up."""

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "tune_quality.py"


def test_cpu_smoke_run(tmp_path):
    out = tmp_path / "quality.json"
    cmd = [sys.executable, str(SCRIPT), "--problems", "branin_currin,c2dtlz2", "--seeds", "1",
           "--budget", "7", "--random-budget", "20", "--samplers", "random,sobol,bayes,optuna-tpe",
           "--json", str(out)]  # fmt: skip
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stdout + run.stderr[-3000:]
    results = json.loads(out.read_text())
    for problem in ("branin_currin", "c2dtlz2"):
        res = results[problem]
        assert 0 < res["target_hv"] <= res["max_hv"]
        for name in ("random", "sobol", "bayes"):
            r = res["samplers"][name]
            curve = r["hv_curves"][0]
            assert len(curve) == 7 and curve == sorted(curve) and r["final_hv"] == curve[-1]
            reach = r["evals_to_target"][0]
            assert (reach is None) == (curve[-1] < res["target_hv"])
            assert set(r["latency"]) == {"0-10"} and r["latency"]["0-10"]["p50"] >= 0
        tpe = res["samplers"]["optuna-tpe"]
        assert tpe["status"] == "ok" or "pip install" in tpe["reason"]
        assert f"### {problem}" in run.stdout and "| bayes |" in run.stdout


def test_unknown_sampler_names_the_known_ones(capsys):
    spec = importlib.util.spec_from_file_location("tune_quality", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    with pytest.raises(SystemExit):
        module.main(["--samplers", "bayes,hyperopt"])
    err = capsys.readouterr().err
    assert "hyperopt" in err and "optuna-nsga2" in err
