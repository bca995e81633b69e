"""Where a tune_lenet trial's fixed cost goes, in one process on one device.

benchmarks/tune_lenet.py fits trial time = fixed + per-epoch cost; on an H100 (2026-11-28) that
was 2.27 s fixed + 0.20 s/epoch, so stopping a trial early saved little. This script runs the
same objective's pieces for a few Sobol configurations, timing each: building the model, the
latency measurement (a new architecture each time), model.compile, fit's setup up to the first
epoch's start, each epoch (validation included), under fit's options given by --variants:

    python scripts/tune_lenet_trial_cost.py --device cuda --configs 6 \\
        --variants default,no_graphs,no_graphs_no_cudnn_benchmark

Prints one row per (variant, configuration) and each variant's medians.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import tune_lenet

import kiln
from kiln import tune
from kiln.train.callbacks import Callback

VARIANTS: dict[str, dict[str, Any]] = {
    "default": {},
    "no_graphs": {"cuda_graphs": False},
    "no_graphs_no_cudnn_benchmark": {"cuda_graphs": False, "cudnn_benchmark": False},
    "no_cudnn_benchmark": {"cudnn_benchmark": False},
}


class EpochClock(Callback):
    def __init__(self) -> None:
        self.marks: list[float] = []

    def on_train_begin(self, trainer: Any) -> None:
        self.marks.append(time.perf_counter())

    def on_epoch_end(self, trainer: Any, epoch: int, logs: Any) -> None:
        self.marks.append(time.perf_counter())


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def one(p: dict[str, Any], options: dict[str, Any], data: tuple, args: argparse.Namespace) -> dict:
    x, y, xt, yt = data
    options = dict(options)
    benchmark = options.pop("cudnn_benchmark", True)
    t0 = time.perf_counter()
    model = tune_lenet.lenet(p)
    t1 = time.perf_counter()
    torch.backends.cudnn.benchmark = benchmark
    latency = tune_lenet.measure_latency_ms(model, 1024, args.device, 30)
    sync(args.device)
    t2 = time.perf_counter()
    model.compile(optimizer="adam", loss="cross_entropy", metrics=["accuracy"], lr=p["lr"],
                  device=args.device, compile=False, **options)  # fmt: skip
    torch.backends.cudnn.benchmark = benchmark
    t3 = time.perf_counter()
    clock = EpochClock()
    model.fit(x, y, epochs=args.epochs, batch_size=p["batch_size"], verbose=0,
              validation_data=(xt, yt), callbacks=[clock], track=False)  # fmt: skip
    sync(args.device)
    t4 = time.perf_counter()
    epochs = [b - a for a, b in zip(clock.marks, clock.marks[1:])]
    return {"build": t1 - t0, "latency": t2 - t1, "latency_ms": latency, "compile": t3 - t2,
            "setup": clock.marks[0] - t3, "epoch1": epochs[0],
            "epoch_rest": statistics.median(epochs[1:]) if len(epochs) > 1 else 0.0,
            "total": t4 - t0}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--configs", type=int, default=6)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--train", type=int, default=8000)
    parser.add_argument("--variants", default="default,no_graphs,no_graphs_no_cudnn_benchmark")
    args = parser.parse_args()
    (x, y), (xt, yt) = kiln.datasets.mnist()
    parts = (x[: args.train], y[: args.train], xt[:2000], yt[:2000])
    data = tuple(t.to(args.device) for t in parts)
    study = tune.Study(tune_lenet.SPACE, tune_lenet.OBJECTIVES, sampler=tune.Sobol(0))
    configs = [study.ask().params for _ in range(args.configs + 1)]
    one(configs[0], {}, data, args)  # warm-up: lazy imports, CUDA context, allocator
    keys = ["build", "latency", "compile", "setup", "epoch1", "epoch_rest", "total"]
    print("variant | batch | " + " | ".join(keys))
    for name in args.variants.split(","):
        rows = []
        for p in configs[1:]:
            row = one(p, VARIANTS[name], data, args)
            rows.append(row)
            cells = " | ".join(f"{row[k]:.3f}" for k in keys)
            print(f"{name} | {p['batch_size']} | {cells}", flush=True)
        med = " | ".join(f"{statistics.median(r[k] for r in rows):.3f}" for k in keys)
        print(f"{name} | median | {med}", flush=True)


if __name__ == "__main__":
    main()
