"""Which GPU kernels a LeNet-5 training step runs, and for how long: kiln's fit() against the
issue's best hand loop (forward, backward and Adam compiled with bf16 autocast, one CUDA graph).

The speed issue asks for 0.12 s/epoch (469 steps: ~255 us a step); kiln ran 0.144-0.148 s
(~310 us) and the hand loop 0.163 s on an H100. Both are CUDA graphs, so the step is its
kernels: this prints each kernel's time per step (CUPTI records kernels inside graph replays),
so the next change goes after the kernels that cost most.

    python scripts/lenet_kernel_profile.py --steps 50 --trace-dir /tmp/traces
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import torch
from torch.profiler import ProfilerActivity, profile

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))

from _speed.common import lenet_arrays
from _speed.torch_loops import _capture_step, _loss_fn, torch_lenet

import kiln
from kiln import callbacks as C

BATCH = 128


def kernels(prof: Any, steps: int) -> list[dict[str, Any]]:
    """Each CUDA kernel (and memcpy/memset) with its calls and microseconds per step."""
    rows = []
    for event in prof.key_averages():
        device_us = getattr(event, "self_device_time_total", 0) or 0
        if device_us <= 0:
            continue
        rows.append({"name": event.key, "calls_per_step": event.count / steps,
                     "us_per_step": device_us / steps})  # fmt: skip
    return sorted(rows, key=lambda r: -r["us_per_step"])


def show(title: str, rows: list[dict[str, Any]], limit: int) -> None:
    total = sum(r["us_per_step"] for r in rows)
    calls = sum(r["calls_per_step"] for r in rows)
    print(f"\n## {title}: {total:.1f} us of kernels per step, {calls:.0f} kernels per step")
    for r in rows[:limit]:
        print(f"{r['us_per_step']:8.2f} us  x{r['calls_per_step']:<5.1f} {r['name'][:110]}")


class _Profile(C.Callback):
    """Profiles ``steps`` steps of the second epoch (the first compiles and captures)."""

    def __init__(self, steps: int) -> None:
        self.steps, self.seen, self.prof = steps, 0, None

    def on_epoch_begin(self, trainer: Any, epoch: int) -> None:
        if epoch == 1:
            torch.cuda.synchronize()
            self.prof = profile(activities=[ProfilerActivity.CUDA])
            self.prof.__enter__()

    def on_batch_end(self, trainer: Any, step: int, logs: Any) -> None:
        if self.prof is not None and self.seen < self.steps:
            self.seen += 1
            if self.seen == self.steps:
                torch.cuda.synchronize()
                self.prof.__exit__(None, None, None)


def profile_kiln(x: Any, y: Any, steps: int, **options: Any) -> Any:
    model = kiln.zoo.create_model("lenet5", augment=False)
    model.compile(loss="cross_entropy", metrics=["accuracy"], **options)
    callback = _Profile(steps)
    model.fit(x, y, epochs=2, batch_size=BATCH, verbose=0, callbacks=[callback], track=False)
    return callback.prof


def profile_hand(x: Any, y: Any, steps: int) -> Any:
    device = torch.device("cuda")
    xs, ys = torch.as_tensor(x, device=device), torch.as_tensor(y, device=device)
    model = torch_lenet().to(device)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3, capturable=True)
    static_x, static_y = xs[:BATCH].clone(), ys[:BATCH].clone()
    replay = _capture_step(_loss_fn(model, bf16=True, compiled=True), opt, static_x, static_y)
    for _ in range(20):
        replay()
    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        perm = torch.randperm(len(xs), device=device)
        for i in range(steps):
            idx = perm[i * BATCH : (i + 1) * BATCH]
            torch.index_select(xs, 0, idx, out=static_x)
            torch.index_select(ys, 0, idx, out=static_y)
            replay()
        torch.cuda.synchronize()
    return prof


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--samples", type=int, default=60_000)
    parser.add_argument("--limit", type=int, default=40, help="kernels printed per run")
    parser.add_argument("--runs", default="kiln,hand,kiln-no-graphs")
    parser.add_argument("--trace-dir", type=Path, help="also write Chrome traces here")
    parser.add_argument("--json", type=Path, help="write the tables here")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit("This profiles GPU kernels: it needs a CUDA GPU.")
    x, y = lenet_arrays(args.samples)
    results = {}
    for run in args.runs.split(","):
        if run == "hand":
            prof = profile_hand(x, y, args.steps)
        elif run == "kiln":
            prof = profile_kiln(x, y, args.steps)
        elif run == "kiln-no-graphs":
            prof = profile_kiln(x, y, args.steps, cuda_graphs=False)
        elif run == "kiln-cudnn":  # cuDNN's convolutions, not the small ones as products
            from kiln.layers._conv import _Conv

            _Conv.matmul_when_compiled = False
            try:
                prof = profile_kiln(x, y, args.steps)
            finally:
                _Conv.matmul_when_compiled = True
        elif run == "kiln-dense-aligned":  # Dense products padded to multiples of 8
            from kiln import layers

            layers.Dense.align_when_compiled = 8
            try:
                prof = profile_kiln(x, y, args.steps)
            finally:
                layers.Dense.align_when_compiled = 1
        else:
            raise SystemExit(
                f"unknown run {run!r}: kiln, hand, kiln-no-graphs, kiln-cudnn, kiln-dense-aligned"
            )
        rows = results[run] = kernels(prof, args.steps)
        show(run, rows, args.limit)
        if args.trace_dir:
            args.trace_dir.mkdir(parents=True, exist_ok=True)
            prof.export_chrome_trace(str(args.trace_dir / f"{run}.json"))
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
