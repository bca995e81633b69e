"""kiln's fit() against hand-written PyTorch loops and Keras 3 on one device (the speed issue).

Each competitor trains the same model on the same synthetic data in its own process (a fresh
CUDA context, its own peak memory, and Keras-JAX never next to torch), one after another, each
under a timeout; a failure is a row of the table, not the end of the run. Prints steady-state
s/epoch (or ms/step) and img/s, time to first step, peak memory and kiln's speedup, as a table
and as Markdown for BENCHMARKS.md. Exits 1 only when a kiln run fails.

    python benchmarks/train_speed.py --workload all                  # one GPU, everything
    python benchmarks/train_speed.py --workload resnet50 --only kiln,torch-compile-bf16-cl
    python benchmarks/train_speed.py --device cpu --workload lenet --epochs 2 --samples 2048 \\
        --only torch-resident,kiln                                   # CPU smoke test

Keras rows run where ``import keras`` works. For a GPU machine without network, fetch the
wheels with benchmarks/fetch_keras_wheels.sh, carry .whl/ there, and before the run:

    python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl
    export PYTHONPATH=/tmp/site:$PWD/src

Compile caches start empty in every process, so the first step includes a cold compile;
``--warm-cache`` keeps the usual cache folders instead.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from dataclasses import asdict
from pathlib import Path
from typing import Any

from _speed.common import Config, Skip
from _speed.report import print_tables, summarize
from rich.console import Console

# workload -> competitor -> "module:function" in _speed/, run in the worker process. kiln first,
# so that its row (the reference of every ratio) exists even if a later run eats the time.
COMPETITORS: dict[str, dict[str, str]] = {
    "lenet": {
        "kiln": "kiln_runs:lenet",
        "kiln-gather": "kiln_runs:lenet_gather",
        "kiln-fp32": "kiln_runs:lenet_fp32",
        "kiln-autotune": "kiln_runs:lenet_autotune",
        "kiln-no-cl": "kiln_runs:lenet_no_channels_last",
        "kiln-cudnn": "kiln_runs:lenet_conv_cudnn",
        "kiln-conv-slices": "kiln_runs:lenet_conv_slices",
        "kiln-conv-unaligned": "kiln_runs:lenet_conv_unaligned",
        "kiln-dense-aligned": "kiln_runs:lenet_dense_aligned",
        "kiln-partial-graph": "kiln_runs:lenet_partial_graph",
        "kiln-foreground": "kiln_runs:lenet_foreground",
        "kiln-cudnn-bench": "kiln_runs:lenet_cudnn_benchmark",
        "kiln-cdt": "kiln_runs:lenet_coordinate_descent",
        "torch-dataloader": "torch_loops:lenet_dataloader",
        "torch-resident": "torch_loops:lenet_resident",
        "torch-cudagraph-eager": "torch_loops:lenet_cudagraph_eager",
        "torch-cudagraph-compile-bf16": "torch_loops:lenet_cudagraph_compile_bf16",
        "torch-cudagraph-compile-bf16-gather": "torch_loops:lenet_cudagraph_compile_bf16_gather",
        "keras-jax": "keras_runs:lenet",
        "keras-torch": "keras_runs:lenet",
    },
    "resnet50": {
        "kiln": "kiln_runs:resnet50",
        "kiln-long": "kiln_runs:resnet50_long",
        "kiln-autotune": "kiln_runs:resnet50_autotune",
        "kiln-cdt": "kiln_runs:resnet50_coordinate_descent",
        "kiln-bn-aten": "kiln_runs:resnet50_bn_aten",
        "kiln-bn-aten-bwd": "kiln_runs:resnet50_bn_aten_backward",
        "torch-eager-tf32": "torch_loops:resnet_eager_tf32",
        "torch-eager-bf16-cl": "torch_loops:resnet_eager_bf16_cl",
        "torch-compile-bf16-cl": "torch_loops:resnet_compile_bf16_cl",
        "keras-jax": "keras_runs:resnet50",
    },
}
KERAS_BACKENDS = {"keras-jax": "jax", "keras-torch": "torch"}
DEFAULTS = {"lenet": {"epochs": 4, "batch_size": 128}, "resnet50": {"epochs": 2, "batch_size": 256}}


def config_for(workload: str, args: argparse.Namespace) -> Config:
    """LeNet: ``--samples`` images an epoch (60,000); ResNet-50: ``--steps`` batches an epoch."""
    batch = args.batch_size or DEFAULTS[workload]["batch_size"]
    samples = args.samples or (60_000 if workload == "lenet" else args.steps * batch)
    epochs = args.epochs or DEFAULTS[workload]["epochs"]
    return Config(workload, args.device, epochs, samples, batch)


# ---- the parent: one subprocess per competitor ------------------------------------------------


def run_competitor(name: str, cfg: Config, args: argparse.Namespace) -> dict[str, Any]:
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="train_speed_") as tmp:
        out = Path(tmp) / "result.json"
        command = [sys.executable, __file__, "--worker", name, "--out", str(out),
                   "--workload", cfg.workload, "--device", cfg.device, "--epochs", str(cfg.epochs),
                   "--samples", str(cfg.samples), "--batch-size", str(cfg.batch_size)]  # fmt: skip
        log, code = _run(command, _worker_env(name, tmp, args.warm_cache), args.timeout)
        if code is None:
            result = _failed(f"timed out after {args.timeout:g} s")
        elif out.exists():
            result = json.loads(out.read_text())
        else:  # killed (out of memory?) or crashed before writing its result
            last = [line for line in log.splitlines() if line.strip()][-1:] or ["no output"]
            result = _failed(f"exit code {code}: {last[0][:160]}")
    result["wall_s"] = time.perf_counter() - started
    if result["status"] == "failed" or args.verbose:
        print(f"---- {cfg.workload} / {name}: last lines of its output ----", file=sys.stderr)
        print("\n".join(log.splitlines()[-25:]), file=sys.stderr)
    return result


def _worker_env(name: str, tmp: str, warm_cache: bool) -> dict[str, str]:
    env = dict(os.environ)
    if name in KERAS_BACKENDS:
        env["KERAS_BACKEND"] = KERAS_BACKENDS[name]
    if not warm_cache:
        env["TORCHINDUCTOR_CACHE_DIR"] = str(Path(tmp) / "inductor")
        env["TRITON_CACHE_DIR"] = str(Path(tmp) / "triton")
    return env


def _run(command: list[str], env: dict[str, str], timeout: float) -> tuple[str, int | None]:
    """Output and exit code (None: timed out) of a worker, run in its own process group so
    that a timeout also ends its DataLoader workers."""
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env=env, start_new_session=True)  # fmt: skip
    try:
        return proc.communicate(timeout=timeout)[0], proc.returncode
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        return proc.communicate()[0], None


def _failed(reason: str) -> dict[str, Any]:
    return {"status": "failed", "reason": reason}


def _progress(workload: str, name: str, result: dict[str, Any]) -> str:
    status = result["status"]
    what = f"{sum(result['epoch_s']):.2f} s of epochs" if status == "ok" else result["reason"]
    return f"[{workload}] {name}: {status} ({what}), {result['wall_s']:.0f} s in all"


# ---- the worker: one competitor, in this process ----------------------------------------------


def run_worker(args: argparse.Namespace) -> None:
    cfg = Config(args.workload, args.device, args.epochs, args.samples, args.batch_size)
    module, function = COMPETITORS[cfg.workload][args.worker].split(":")
    try:
        run = getattr(importlib.import_module(f"_speed.{module}"), function)
        result = {"status": "ok", **run(cfg)}
    except Skip as skip:
        result = {"status": "skipped", "reason": str(skip)}
    except Exception as error:
        traceback.print_exc()
        first_line = (str(error).strip().splitlines() or [""])[0]
        result = {"status": "failed", "reason": f"{type(error).__name__}: {first_line}"[:200]}
    result["env"] = _environment(cfg)
    Path(args.out).write_text(json.dumps(result))


def _environment(cfg: Config) -> dict[str, str]:
    """Versions and the device, from whichever frameworks this worker loaded."""
    env = {}
    if "torch" in sys.modules:
        torch = sys.modules["torch"]
        env["torch"] = torch.__version__
        cuda = cfg.device == "cuda" and torch.cuda.is_available()
        env["device"] = torch.cuda.get_device_name() if cuda else f"CPU, {os.cpu_count()} cores"
    for name in ("keras", "jax"):
        if name in sys.modules:
            env[name] = sys.modules[name].__version__
    return env


# ---- command line -----------------------------------------------------------------------------


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--workload", choices=["lenet", "resnet50", "all"], default="all")
    parser.add_argument("--only", help="comma-separated competitors (default: all of them)")
    parser.add_argument("--epochs", type=int, help="LeNet 4, ResNet-50 2; epoch 1 is warm-up")
    parser.add_argument("--steps", type=int, default=30, help="ResNet-50 steps per epoch")
    parser.add_argument("--samples", type=int, help="images per epoch (LeNet: 60,000)")
    parser.add_argument("--batch-size", type=int, help="LeNet 128, ResNet-50 256")
    parser.add_argument("--device", default="cuda", help="cuda or cpu")
    parser.add_argument("--timeout", type=float, default=300, help="seconds per competitor")
    parser.add_argument("--warm-cache", action="store_true", help="keep the compile caches")
    parser.add_argument("--json", type=Path, help="also write the results to this file")
    parser.add_argument("--verbose", action="store_true", help="print every worker's output")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    return parser.parse_args()


def selected(args: argparse.Namespace, workloads: list[str]) -> set[str] | None:
    if not args.only:
        return None
    names = {name.strip() for name in args.only.split(",") if name.strip()}
    known = {name for w in workloads for name in COMPETITORS[w]}
    if unknown := names - known:
        raise SystemExit(
            f"--only names no competitor of {', '.join(workloads)}: {', '.join(sorted(unknown))}. "
            f"Known: {', '.join(sorted(known))}."
        )
    return names


def main() -> int:
    args = parse_args()
    if args.worker:
        run_worker(args)
        return 0
    workloads = ["lenet", "resnet50"] if args.workload == "all" else [args.workload]
    only = selected(args, workloads)
    console = Console(width=max(160, Console().width))
    report: dict[str, Any] = {}
    for workload in workloads:
        cfg = config_for(workload, args)
        results = {}
        for name in COMPETITORS[workload]:
            if only is None or name in only:
                results[name] = run_competitor(name, cfg, args)
                print(_progress(workload, name, results[name]), file=sys.stderr, flush=True)
        summarize(results)
        print_tables(cfg, results, console)
        report[workload] = {"config": asdict(cfg), "results": results}
    if args.json:
        args.json.write_text(json.dumps(report, indent=1))
    kiln_failed = any(
        r["results"].get("kiln", {}).get("status") == "failed" for r in report.values()
    )
    return 1 if kiln_failed else 0


if __name__ == "__main__":
    sys.exit(main())
