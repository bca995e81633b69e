"""benchmarks/train_speed.py runs end to end on a CPU at a tiny size, and its ratios add up."""

import json
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "train_speed.py"
SMOKE = ["--device", "cpu", "--workload", "lenet", "--epochs", "2", "--samples", "2048"]


def _run(*args: str) -> subprocess.CompletedProcess:
    command = [sys.executable, str(SCRIPT), *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=120)


def test_cpu_smoke_run_prints_kiln_and_ratios(tmp_path):
    out = tmp_path / "speed.json"
    run = _run(*SMOKE, "--only", "torch-resident,kiln,torch-cudagraph-eager", "--json", str(out))
    assert run.returncode == 0, run.stdout + run.stderr
    results = json.loads(out.read_text())["lenet"]["results"]
    kiln, torch_loop = results["kiln"], results["torch-resident"]
    for result in (kiln, torch_loop):
        assert result["status"] == "ok"
        assert len(result["epoch_s"]) == 2 and result["steps_per_epoch"] == 16
        assert result["first_step_s"] > 0 and min(result["epoch_s"]) > 0
        assert result["first_epoch_s"] >= max(result["first_step_s"], result["epoch_s"][0])
    assert kiln["kiln_speedup"] == 1.0
    assert torch_loop["kiln_speedup"] == pytest.approx(kiln["img_s"] / torch_loop["img_s"])
    skipped = results["torch-cudagraph-eager"]
    assert (skipped["status"], skipped["reason"]) == ("skipped", "needs CUDA")
    ratio = f"{torch_loop['kiln_speedup']:.2f}x"
    kiln_row = r"^\| \*\*kiln\*\* \| [0-9.]+ \| [0-9,]+ \| .* \| 1\.00x \|"
    torch_row = rf"^\| torch-resident \| .* \| {re.escape(ratio)} \| fp32 \|$"
    assert re.search(kiln_row, run.stdout, re.M) and re.search(torch_row, run.stdout, re.M)


def test_a_hung_competitor_is_a_failed_row_and_kiln_failing_fails_the_run():
    run = _run(*SMOKE, "--only", "kiln", "--timeout", "0.5")
    assert run.returncode == 1
    assert "failed: timed out after 0.5 s" in run.stdout


def test_unknown_competitor_names_the_known_ones():
    run = _run("--workload", "lenet", "--only", "kiln,pytorch")
    assert run.returncode != 0
    assert "pytorch" in run.stderr and "torch-dataloader" in run.stderr


def _multi_gpu_on_two_cpu_processes(*options: str) -> str:
    """multi_gpu.py on 1 and 2 gloo processes: its stdout, once both table rows are there."""
    script = Path(__file__).resolve().parents[1] / "benchmarks" / "multi_gpu.py"
    cmd = [sys.executable, str(script), "--gpus", "1,2", "--epochs", "2", *options]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-2000:]
    rows = [line for line in done.stdout.splitlines() if line.startswith(("| 1 |", "| 2 |"))]
    assert len(rows) == 2 and "failed" not in done.stdout, done.stdout + done.stderr[-2000:]
    return done.stdout


def test_multi_gpu_benchmark_runs_on_two_cpu_processes():
    out = _multi_gpu_on_two_cpu_processes("--model", "lenet5", "--batch-size", "32", "--steps",
                                          "4", "--kiln-variants", "static-graph")  # fmt: skip
    assert re.search(r"kiln:static-graph on 2: [\d,]+ img/s", out), out


def test_multi_gpu_transformer_trains_fully_sharded_on_two_cpu_processes():
    """The FSDP2 scaling benchmark's path (issue: 8 GPUs, a 1B transformer) at a tiny size."""
    out = _multi_gpu_on_two_cpu_processes("--model", "transformer", "--size", "tiny",
                                          "--batch-size", "4", "--steps", "3", "--kiln-variants",
                                          "full-shard,prefetch")  # fmt: skip
    assert "| GPUs | raw-fsdp seq/s |" in out, out
    for variant in ("full-shard", "prefetch"):  # each patches kiln's set-up: still in step
        assert re.search(rf"kiln:{variant} on 2: [\d,]+ img/s", out), out


def test_serve_http_smoke_run_reports_throughput_and_latency(tmp_path):
    script = Path(__file__).resolve().parents[1] / "benchmarks" / "serve_http.py"
    out = tmp_path / "serve.json"
    cmd = [sys.executable, str(script), "--smoke", "--json", str(out)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stdout + done.stderr[-2000:]
    result = json.loads(out.read_text())
    assert result["model"]["input"] == {"shape": [32, 32, 3], "dtype": "uint8", "layout": "NHWC"}
    assert [row["clients"] for row in result["rows"]] == [1, 4]
    for row in result["rows"]:  # 2 images per request, engine batches of at most 8
        assert row["errors"] == {} and row["requests"] > 0
        assert row["img_s"] == pytest.approx(2 * row["req_s"])
        assert 0 < row["p50_ms"] <= row["p99_ms"] and 2 <= row["mean_batch"] <= 8
        assert row["meets_slo"] == (row["p99_ms"] <= 7.0)
    assert re.search(r"^\| 4 \| [0-9,]+ \| [0-9,]+ \| [0-9.]+ \| [0-9.]+ \| (yes|no) \|",
                     done.stdout, re.M)  # fmt: skip


def test_serve_http_echo_engine_measures_the_server_alone(tmp_path):
    script = Path(__file__).resolve().parents[1] / "benchmarks" / "serve_http.py"
    out = tmp_path / "serve.json"
    cmd = [sys.executable, str(script), "--smoke", "--engine", "echo", "--concurrency", "2",
           "--duration", "0.5", "--json", str(out)]  # fmt: skip
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stdout + done.stderr[-2000:]
    assert "building the engine: echo" in done.stderr
    (row,) = json.loads(out.read_text())["rows"]
    assert row["clients"] == 2 and row["errors"] == {} and row["requests"] > 0
    assert 2 <= row["mean_batch"] <= 4  # two clients of 2 images each


def test_inference_benchmark_cpu_smoke_run_reports_rows_ratios_and_cold_start(tmp_path):
    script = Path(__file__).resolve().parents[1] / "benchmarks" / "inference.py"
    out = tmp_path / "inference.json"
    rows = "eager-fp32,eager-cudagraph,kiln-fp16,kiln-fp8"
    cmd = [sys.executable, str(script), "--smoke", "--only", rows, "--out", str(out)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    results = json.loads(out.read_text())["results"]
    kiln, eager = results["kiln-fp16"], results["eager-fp32"]
    assert kiln["status"] == eager["status"] == "ok"
    assert sorted(map(int, kiln["rows"])) == [1, 4]
    for row in kiln["rows"].values():
        assert 0 < row["p50_ms"] <= row["p99_ms"]
        assert row["throughput"] == pytest.approx(row["batch_size"] / row["mean_ms"] * 1e3)
    assert kiln["rel_err"] < 2e-3 and eager["rel_err"] < 1e-5  # fp16 vs the fp32 reference
    assert kiln["info"]["precision"] == "fp16"
    cold = kiln["cold_start"]
    assert cold["status"] == "ok" and cold["batch_sizes"] == [1, 4] and cold["load_s"] > 0
    assert results["eager-cudagraph"] == {"status": "skipped", "reason": "needs CUDA"}
    assert results["kiln-fp8"]["status"] == "skipped"
    ratio = eager["rows"]["1"]["p50_ms"] / kiln["rows"]["1"]["p50_ms"]
    assert re.search(rf"^│ eager-fp32 .*│ +{ratio:.2f}x │", done.stdout, re.M), done.stdout


def test_inference_builds_into_a_repository_once_and_serve_http_serves_it(tmp_path):
    """Build once, benchmark twice: the second inference run loads the engine the first one
    saved, and serve_http.py serves that repository as it is (uint8 images over HTTP)."""
    root = Path(__file__).resolve().parents[1] / "benchmarks"
    repo = tmp_path / "repo"
    runs = []
    for i in range(2):
        out = tmp_path / f"inference{i}.json"
        cmd = [sys.executable, str(root / "inference.py"), "--smoke", "--only", "kiln-fp16",
               "--repository", str(repo), "--out", str(out)]  # fmt: skip
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=240)
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
        runs.append(json.loads(out.read_text())["results"]["kiln-fp16"])
    built, loaded = runs
    assert (built["source"], loaded["source"]) == ("built", "repository")
    assert built["repository"] == loaded["repository"] == str(repo / "resnet18" / "1")
    assert sorted(p.name for p in (repo / "resnet18").iterdir()) == ["1"]  # no second version
    assert loaded["rel_err"] == pytest.approx(built["rel_err"], rel=1e-3)  # the same engine
    assert loaded["cold_start"]["status"] == "ok"
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    out = tmp_path / "serve.json"
    cmd = [
        sys.executable,
        str(root / "serve_http.py"),
        "--smoke",
        "--repository",
        str(repo),
        "--model",
        "resnet18",
        "--concurrency",
        "2",
        "--port",
        str(port),
        "--json",
        str(out),
    ]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=240)  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    result = json.loads(out.read_text())
    assert result["model"]["name"] == "resnet18" and result["model"]["batch_sizes"] == [1, 4]
    assert result["model"]["input"] == {"shape": [32, 32, 3], "dtype": "uint8", "layout": "NHWC"}
    [row] = result["rows"]
    assert row["errors"] == {} and row["requests"] > 0
    level = json.loads(next(line for line in done.stdout.splitlines() if '"level"' in line))
    assert level["level"]["requests"] == row["requests"]  # printed as soon as measured


def _hypervolume_2d(points: list[tuple[float, float]], ref: tuple[float, float]) -> float:
    """Area that (accuracy up, latency down) points dominate above/left of `ref`, by a sweep."""
    inside = sorted((ms, acc) for acc, ms in points if acc > ref[0] and ms < ref[1])
    area, best = 0.0, ref[0]
    for (ms, acc), nxt in zip(inside, [*(p[0] for p in inside[1:]), ref[1]]):
        best = max(best, acc)
        area += (nxt - ms) * (best - ref[0])
    return area


def test_tune_lenet_smoke_run_prunes_and_its_numbers_add_up(tmp_path):
    script = Path(__file__).resolve().parents[1] / "benchmarks" / "tune_lenet.py"
    # one budget for both runs, all of it used: the pruned run compares trial by trial
    cmd = [sys.executable, str(script), "--smoke", "--budget-factor", "1", "--full-budget",
           "--out", str(tmp_path)]  # fmt: skip
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout + run.stderr[-3000:]
    result = json.loads((tmp_path / "results.json").read_text())
    base, pruned = result["runs"]["no_stopping"], result["runs"]["successive_halving"]
    # same sampler and seed: trial i is the same configuration in both runs
    assert [t["params"] for t in base["trials"]] == [t["params"] for t in pruned["trials"]]
    assert (base["completed"], base["pruned"], base["epochs_trained"]) == (8, 0, 32)
    assert pruned["pruned"] >= 1 and pruned["completed"] + pruned["pruned"] == 8
    assert pruned["epochs_trained"] == sum(t["epochs"] for t in pruned["trials"]) < 32
    # one seeded worker: a trial the pruner let finish ends exactly as without stopping
    for a, b in zip(base["trials"], pruned["trials"]):
        assert b["state"] == "pruned" or b["values"] == a["values"]
    ref = result["reference"]
    for r in (base, pruned):
        done = [(t["values"]["accuracy"], t["values"]["latency_ms"]) for t in r["trials"]
                if t["state"] == "completed"]  # fmt: skip
        assert r["hypervolume"] == pytest.approx(
            _hypervolume_2d(done, (ref["accuracy"], ref["latency_ms"]))
        )
        assert r["hypervolume"] > 0 and r["hv_curve"][-1][1] == pytest.approx(r["hypervolume"])
        assert r["training_s"] == pytest.approx(sum(t["wall_s"] for t in r["trials"]))
    bar = result["bar"]
    assert bar["hv_ratio"] == pytest.approx(pruned["hypervolume"] / base["hypervolume"])
    saving = 1 - pruned["training_s"] / base["training_s"]
    assert bar["training_time_saving"] == pytest.approx(saving)
    assert bar["reached"] == (pruned["hypervolume"] >= 0.99 * base["hypervolume"])
    assert bar["met"] == (bar["reached"] and saving >= 0.4)
    same = pruned["first_budget"]  # the whole run, here
    assert same["trials"] == 8 and same["hypervolume"] == pytest.approx(pruned["hypervolume"])
    # replayed on one worker, the same pruner makes the same decisions as the real run
    used = result["pruner"]
    replay = next(
        r
        for r in result["replays"]
        if (r["min_step"], r["reduction"]) == (used["min_step"], used["reduction"])
    )
    assert replay["epochs"] == pruned["epochs_trained"]
    assert replay["hypervolume"] == pytest.approx(pruned["hypervolume"])
    for name in ("pareto_no_stopping", "pareto_successive_halving", "hypervolume_vs_time"):
        png = (tmp_path / f"{name}.png").read_bytes()
        assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000
    assert re.search(r"^\| successive_halving \| 8 \| \d \| [1-9] \| 0 \|", run.stdout, re.M)


def test_train_fp8_smoke_run_prints_every_row_against_kiln_fp8():
    pytest.importorskip("torchao.float8")
    script = Path(__file__).resolve().parents[1] / "benchmarks" / "train_fp8.py"
    run = subprocess.run([sys.executable, str(script), "--smoke"], capture_output=True,
                         text=True, timeout=300)  # fmt: skip
    assert run.returncode == 0, run.stdout + run.stderr
    rows = dict(re.findall(r"^\| (\S+) \| [0-9.]+ \| [0-9,]+ \| ([0-9.]+)x \|$", run.stdout, re.M))
    assert set(rows) == {"kiln-bf16", "kiln-fp8", "hand-bf16", "hand-fp8"}
    assert rows["kiln-fp8"] == "1.00"
