"""Where LeNet-5's time to the first optimizer step goes, with cold and with warm compile caches.

The speed issue's bar: from fit() to the end of the first epoch in <= 10 s, <= 5 s with a warm
compile cache; an H100 took 19-23 s cold and 11.2 s warm (BENCHMARKS.md). This script runs
kiln's fit() (defaults) in fresh processes, first with an empty cache folder, then with the one
the first filled, and prints for each: the import time, the time from fit() to the end of
steps 1 and 2 and of the epoch, and the compile phases that took longest (torch._dynamo's
compile_times, summed per phase).

    python scripts/first_step_profile.py --device cuda --runs cold,warm
    python scripts/first_step_profile.py --device cuda --runs cold,warm,cold-fg,warm-fg
    python scripts/first_step_profile.py --device cuda --runs cold-lazy,warm-lazy,cold,warm
    python scripts/first_step_profile.py --device cpu --compile   # CPU, compiled (a check)
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CHILD = r"""
import json, sys, time
t0 = time.perf_counter()
import torch
import kiln
t1 = time.perf_counter()
opts = json.loads(sys.argv[1])
torch.manual_seed(0)
n = opts["samples"]
x, y = torch.randn(n, 1, 28, 28), torch.randint(0, 10, (n,))
import kiln.train._fast_path as fast_path
import kiln.train._trainer as trainer_module
from kiln.track import TrackingCallback
fast_path.WARM_COMPILE_WORKERS = opts["warm_workers"]
if opts["switch_interval"] is not None:
    from kiln.train._compile_behind import CompileBehind
    CompileBehind.SWITCH_INTERVAL = opts["switch_interval"]
spans = {}  # seconds inside each of fit()'s set-up parts (wall time; CUDA work not awaited)

def timed(owner, name, label):
    fn = getattr(owner, name)
    def wrapper(*args, **kwargs):
        start = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            spans[label] = spans.get(label, 0.0) + time.perf_counter() - start
    setattr(owner, name, wrapper)

for owner, name, label in [
    (trainer_module, "warm_compile_workers", "start compile workers"),
    (trainer_module, "make_loader", "data to the device (CUDA init)"),
    (trainer_module, "build_model", "build lazy layers"),
    (trainer_module, "make_optimizer", "optimizer"),
    (trainer_module.Trainer, "_probe", "probe forward"),
    (trainer_module.Trainer, "_make_step", "make the step"),
    (trainer_module.Trainer, "_make_gather_step", "gather step"),
    (TrackingCallback, "on_train_begin", "open the store, create the run"),
]:
    timed(owner, name, label)
model = kiln.zoo.create_model("lenet5")
extra = {"compile": True} if opts["compile"] else {}
if not opts["background"] or opts["compile"]:  # "-fg"; or the CPU check: behind it there too
    extra["background_compile"] = opts["background"]
if opts["cudnn_benchmark"] is not None:
    extra["cudnn_benchmark"] = opts["cudnn_benchmark"]
model.compile(optimizer="adam", loss="cross_entropy", metrics=["accuracy"],
              device=opts["device"], **extra)
marks = {}

class Clock(kiln.train.callbacks.Callback):
    def on_train_begin(self, trainer):  # the data is on the device and the model built
        marks["train begin"] = time.perf_counter() - t2

    def on_batch_end(self, trainer, step, logs):
        # steps 1-3 warm up on a side stream (1 compiles, in the foreground), 4 captures the
        # CUDA graph, 5 replays it; the epoch's last step is its partial batch, which runs
        # eagerly. With the compile in the background, steps 1-4 are the eager step's
        behind = getattr(trainer._step_fn, "switched", None)
        if behind and "switch" not in marks:
            marks["switch"] = time.perf_counter() - t2
            marks["switch step"] = step
        if step <= 5 or step >= trainer.steps_per_epoch - 1:
            if opts["device"].startswith("cuda"):
                torch.cuda.synchronize()
            marks[f"step {step}"] = time.perf_counter() - t2

    def on_epoch_end(self, trainer, epoch, logs):  # the bar's end point (fit may go on
        # waiting for a compile that runs behind the training)
        if opts["device"].startswith("cuda"):
            torch.cuda.synchronize()
        marks["epoch"] = time.perf_counter() - t2

profiler = None
if opts["cprofile"]:
    import cProfile
    profiler = cProfile.Profile()
    profiler.enable()
t2 = time.perf_counter()
model.fit(x, y, epochs=1, batch_size=128, verbose=0, callbacks=[Clock()], track=opts["track"])
if profiler is not None:
    profiler.disable()
    import io, pstats
    text = io.StringIO()
    pstats.Stats(profiler, stream=text).sort_stats("cumulative").print_stats(45)
    open(opts["cprofile"], "w").write(text.getvalue())
if opts["device"].startswith("cuda"):
    torch.cuda.synchronize()
marks["fit returned"] = time.perf_counter() - t2
from torch._dynamo.utils import compile_times
phases = {}
import re
for line in compile_times(repr="str").splitlines()[2:]:  # "name, 1.2, 0.3" or a tabulated row
    match = re.match(r"\s*([^\s,]+)[\s,]+([\d.][\d.,\s]*)$", line)  # not the "----" rule
    if match:
        phases[match[1]] = sum(float(v) for v in re.split(r"[\s,]+", match[2]) if v)
print(json.dumps({"import_s": t1 - t0, "marks": marks, "spans": spans, "phases": phases}))
"""

LIBS = r"""
import json, time
spans, t = {}, time.perf_counter()

def mark(label):
    global t
    now = time.perf_counter()
    spans[label], t = now - t, now

import torch
import torch.nn.functional as F
mark("import torch")
torch.zeros(1, device="cuda")
torch.cuda.synchronize()
mark("CUDA context")
a = torch.randn(128, 400, device="cuda", dtype=torch.bfloat16)
w = torch.randn(120, 400, device="cuda", dtype=torch.bfloat16)
F.linear(a, w)
torch.cuda.synchronize()
mark("first cuBLAS matmul (bf16)")
x = torch.randn(128, 1, 32, 32, device="cuda", dtype=torch.bfloat16)
k = torch.randn(6, 1, 5, 5, device="cuda", dtype=torch.bfloat16)
x, k = (v.contiguous(memory_format=torch.channels_last) for v in (x, k))
F.conv2d(x, k)
torch.cuda.synchronize()
mark("first cuDNN convolution (bf16, channels_last)")
F.conv2d(x, k)
torch.cuda.synchronize()
mark("second one")
import torch._dynamo
mark("import torch._dynamo")
import torch._inductor.compile_fx
mark("import Inductor")
print(json.dumps(spans))
"""

PHASES = 12  # the longest compile phases printed per run


def _switch_interval(kind: str) -> float | None:
    """Seconds from a run kind's "-si<ms>" part (None: kiln's own)."""
    parts = [p for p in kind.split("-") if p.startswith("si")]
    return float(parts[0][2:]) / 1000 if parts else None


def run(kind: str, cache: str, args: argparse.Namespace) -> dict:
    # fit()'s defaults record the run: in a store of this run's own, not ./kiln.db
    env = dict(os.environ, TORCHINDUCTOR_CACHE_DIR=cache, KILN_STORE=f"{cache}/kiln.db")
    opts = {"device": args.device, "samples": args.samples, "compile": args.compile,
            "cudnn_benchmark": {"on": True, "off": False}.get(args.cudnn_benchmark),
            "track": not args.no_track, "warm_workers": "lazy" not in kind.split("-"),
            "background": "fg" not in kind.split("-"),
            "switch_interval": _switch_interval(kind),
            "cprofile": f"{cache}/{kind}.prof.txt" if args.cprofile else None}  # fmt: skip
    start = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", CHILD, json.dumps(opts)], env=env,
                         capture_output=True, text=True, timeout=args.timeout)  # fmt: skip
    if out.returncode != 0:
        raise SystemExit(f"{kind} run failed:\n{out.stderr[-4000:]}")
    result = json.loads(out.stdout.strip().splitlines()[-1])
    result["process_s"] = time.perf_counter() - start
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument(
        "--runs",
        default="cold,warm",
        help="cold (an empty cache) and warm (the last cold run's cache) runs, in order; "
        "'-lazy' after one leaves Inductor's compile workers to start when it first compiles, "
        "'-fg' compiles before the first step (background_compile=False), '-si0.1' sets "
        "the interpreter's switch interval to 0.1 ms while the compile runs behind",
    )
    parser.add_argument("--samples", type=int, default=60_000)
    parser.add_argument("--compile", action="store_true", help="compile=True (for the CPU)")
    parser.add_argument("--cudnn-benchmark", choices=["auto", "on", "off"], default="auto",
                        help="fit()'s cudnn_benchmark (auto: kiln decides)")  # fmt: skip
    parser.add_argument(
        "--no-track",
        action="store_true",
        help="fit(track=False): leave the run unrecorded (the default records it)",
    )
    parser.add_argument(
        "--cprofile",
        action="store_true",
        help="print cProfile's top functions under fit() for each run",
    )
    parser.add_argument(
        "--libs",
        action="store_true",
        help="also time CUDA's, cuBLAS's, cuDNN's and the compiler's first use",
    )
    parser.add_argument("--cache", default=None, help="cache folder (default: a fresh one)")
    parser.add_argument("--timeout", type=float, default=240)
    parser.add_argument("--json", default=None, help="also write the results here")
    args = parser.parse_args()
    cache = args.cache or tempfile.mkdtemp(prefix="kiln-first-step-")
    results: dict[str, dict] = {}
    for kind in args.runs.split(","):
        if kind.startswith("cold") and any(k.startswith("cold") for k in results):
            cache = tempfile.mkdtemp(prefix="kiln-first-step-")  # each cold run starts empty
        r = results[kind] = run(kind, cache, args)
        marks = ", ".join(f"{k} {v:.2f} s" if isinstance(v, float) else f"{k} {v}"
                          for k, v in r["marks"].items())  # fmt: skip
        print(f"## {kind}: import {r['import_s']:.2f} s; from fit(): {marks}; "
              f"process {r['process_s']:.1f} s", flush=True)  # fmt: skip
        for name, seconds in r["spans"].items():
            print(f"  {seconds:7.2f} s  fit(): {name}")
        top = sorted(r["phases"].items(), key=lambda kv: -kv[1])[:PHASES]
        for name, seconds in top:
            print(f"  {seconds:7.2f} s  {name}")
        if args.cprofile:
            print(Path(f"{cache}/{kind}.prof.txt").read_text(), flush=True)
    if args.libs:  # what the libraries cost on first use, in a fresh process
        out = subprocess.run([sys.executable, "-c", LIBS], capture_output=True, text=True,
                             timeout=args.timeout)  # fmt: skip
        if out.returncode != 0:
            raise SystemExit(f"libs run failed:\n{out.stderr[-4000:]}")
        results["libs"] = json.loads(out.stdout.strip().splitlines()[-1])
        print("## first use, in a fresh process:")
        for name, seconds in results["libs"].items():
            print(f"  {seconds:7.2f} s  {name}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
