"""Batch 1: where the Triton convolutions' gain goes between the replayed graph and a call.

On 2026-11-28 (H200) ``fused_conv_check.py`` profiled one replay of kiln's batch-1 graph: with
``fuse="triton"`` its kernels spanned 314 us against 365 with cuDNN's calls alone, yet a call
timed with CUDA events took 379 us against 370. This script splits a call's time for six
CUDA-graph runners (the fused fp16 graph eager, with and without ``TritonConv``, and the same
two compiled in process by ``kiln.deploy.optimize(..., compile="jit")``, taking float
batches or, as ``benchmarks/inference.py``'s engines do, uint8 images):

- host_us: the host's time in ``graph.replay()`` (no wait) and in the runner's input copy;
- replay_us: CUDA events around one replay after an idle GPU; call_us: around the runner's
  copy in and replay; back_us: per replay, 200 back to back;
- p50_us: wall clock of a call and its synchronize;
- the CUDA API calls' host times and the kernels' span from one profiled call.

Engines: "kiln" is ``fuse="cudnn"`` (cuDNN's fused calls alone), "kiln-triton" the default
``fuse=True`` (also the space-to-depth stem and the Triton kernels at batch 1, as programmatic
dependent launches on compute capability 9+). ``-nos2d`` leaves the stem out, ``-nopdl``
launches the kernels plainly, ``-pdl`` as dependent launches whatever the card. With
``--pdl`` the eager graph also runs with its Triton kernels as dependent launches (the same
configs).

The profiles come last: once torch's profiler has run in a process, every CUDA call after it
costs the host more (the first run of this script: ``graph.replay()`` 14 us before the first
profile, 37-47 us after it, each runner alike).

    python scripts/b1_launch_check.py [--compile aot]   # on a GPU
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from kiln import deploy, zoo  # noqa: E402
from kiln.deploy import _optimize as optimize_module  # noqa: E402
from kiln.deploy._capture import capture, eval_mode  # noqa: E402
from kiln.deploy._conv_b1 import TritonConv, _tune  # noqa: E402
from kiln.deploy._cuda_graph import GraphRunner  # noqa: E402
from kiln.deploy._fold import FoldBatchNorm  # noqa: E402
from kiln.deploy._fuse_conv import FuseConvReLU  # noqa: E402
from kiln.deploy._passes import ChannelsLast  # noqa: E402
from kiln.deploy._precision import Precision  # noqa: E402
from kiln.deploy._space_to_depth import SpaceToDepthStem  # noqa: E402

OUT = Path(os.environ.get("OUT", "."))
IMAGENET = {"mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]}  # as inference.py


def median_us(samples: list[float]) -> float:
    return round(statistics.median(samples) * 1e6, 1)


def event_us(fn: Any, calls: int = 200) -> float:
    """Median us of one ``fn()`` between CUDA events, the GPU idle before each."""
    times = []
    for _ in range(calls):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        torch.cuda.synchronize()
        start.record()
        fn()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end) * 1e-3)
    return median_us(times)


def host_us(fn: Any, calls: int = 200) -> float:
    """Median us the host spends in ``fn()`` (not waiting for the GPU)."""
    times = []
    for _ in range(calls):
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    torch.cuda.synchronize()
    return median_us(times)


def back_to_back_us(runner: GraphRunner, replays: int = 200) -> float:
    torch.cuda.synchronize()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(replays):
        runner.graph.replay()
    end.record()
    end.synchronize()
    return round(start.elapsed_time(end) * 1e3 / replays, 1)


def wall_us(runner: GraphRunner, x: torch.Tensor, calls: int = 300) -> float:
    times = []
    for _ in range(calls):
        t0 = time.perf_counter()
        runner(x)
        torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    return median_us(times)


def profiled(name: str, runner: GraphRunner, x: torch.Tensor) -> dict[str, Any]:
    """Three calls profiled: the host's time per CUDA API call, and the last call's kernels
    (each printed with its time and the idle time before it)."""
    from torch.profiler import ProfilerActivity, profile

    runner(x)
    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        for _ in range(3):
            runner(x)
            torch.cuda.synchronize()
    api: dict[str, list[float]] = {}
    kernels = []
    for e in prof.events():
        if e.device_type == torch.autograd.DeviceType.CUDA:
            kernels.append(e)
        elif e.name.startswith("cuda"):
            api.setdefault(e.name, []).append(e.time_range.end - e.time_range.start)
    kernels.sort(key=lambda e: e.time_range.start)
    last = kernels[-len(kernels) // 3 :]
    print(f"{name}: kernels of one call (us: idle before, run)")
    for i, e in enumerate(last):
        idle = e.time_range.start - last[i - 1].time_range.end if i else 0.0
        print(f"  {i:3d} {idle:5.1f} {e.time_range.end - e.time_range.start:6.1f}  {e.name[:90]}")
    span = last[-1].time_range.end - last[0].time_range.start if last else 0.0
    busy = sum(e.time_range.end - e.time_range.start for e in last)
    return {"api_us": {k: round(statistics.median(v), 1) for k, v in api.items()},
            "kernels": len(last), "span_us": round(span, 1), "busy_us": round(busy, 1)}  # fmt: skip


def measure(name: str, runner: GraphRunner, engine: Any, x: torch.Tensor) -> dict[str, Any]:
    row = {
        "replay_host_us": host_us(runner.graph.replay),
        "copy_host_us": host_us(lambda: runner.input.copy_(x)),
        "replay_us": event_us(runner.graph.replay),
        "call_us": event_us(lambda: runner(x)),
        "back_us": back_to_back_us(runner),
        "p50_us": wall_us(runner, x),
    }
    if engine is not None:  # the whole Engine call: checks, copy in, replay, output cloned
        row["engine_p50_us"] = wall_us(engine, x)  # type: ignore[arg-type]
    print(name, json.dumps(row), flush=True)
    return row


def _key(layer: dict[str, Any]) -> tuple[Any, ...]:
    return (layer["kind"], tuple(layer["image"]), tuple(layer["w"].shape), layer["stride"],
            layer["padding"], layer["bias"] is not None)  # fmt: skip


@contextlib.contextmanager
def engine_passes(name: str) -> Iterator[None]:
    """``optimize``'s passes as the engine's name asks: "-pdl" / "-nopdl":
    ``TritonConv(pdl=True / False)``; "-nos2d": without ``SpaceToDepthStem``."""
    original = optimize_module._passes

    def passes(*args: Any) -> list[Any]:
        chosen = original(*args)
        if "-nos2d" in name:
            chosen = [p for p in chosen if not isinstance(p, SpaceToDepthStem)]
        if "-pdl" in name or "-nopdl" in name:
            pdl = "-pdl" in name
            chosen = [TritonConv(pdl=pdl) if isinstance(p, TritonConv) else p for p in chosen]
        return chosen

    optimize_module._passes = passes  # type: ignore[assignment]
    try:
        yield
    finally:
        optimize_module._passes = original  # type: ignore[assignment]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--compile",
        choices=("jit", "aot"),
        default="jit",
        help="the kiln engines compiled in process or as AOTInductor packages",
    )
    parser.add_argument("--engines", default="kiln,kiln-triton,kiln-img,kiln-triton-img",
                        help="kiln engines: kiln[-triton][-nos2d][-pdl|-nopdl][-img]")  # fmt: skip
    pdl = "also the eager graph with its Triton kernels as dependent launches"
    parser.add_argument("--pdl", action="store_true", help=pdl)
    args = parser.parse_args()
    torch.backends.cudnn.benchmark = True
    torch.manual_seed(0)
    device = torch.device("cuda")
    model = eval_mode(zoo.create_model("resnet50")).to(device)
    x = torch.randn(2, 3, 224, 224, device=device)
    x1 = x[:1].contiguous()
    module = capture(model, x).module()
    for p in (FoldBatchNorm(), Precision(torch.float16), ChannelsLast(), FuseConvReLU()):
        module = p.apply(module)
    chosen: dict[tuple[Any, ...], Any] = {}

    def tune(layer: dict[str, Any]) -> Any:  # kiln's tuning, its choices kept for the -pdl run
        chosen[_key(layer)] = _tune(layer, 20)
        return chosen[_key(layer)]

    triton_pass = TritonConv(tune=tune, pdl=False)
    rewritten = triton_pass.apply(module)
    print("TritonConv", json.dumps(triton_pass.describe()), flush=True)
    runners: dict[str, tuple[Any, Any, torch.Tensor]] = {
        "eager-cudnn": (GraphRunner(torch.inference_mode()(module), x1), None, x1),
        "eager-triton": (GraphRunner(torch.inference_mode()(rewritten), x1), None, x1),
    }
    if args.pdl:  # the same kernels, launched as programmatic dependent launches
        dependent = TritonConv(tune=lambda layer: chosen[_key(layer)], pdl=True).apply(module)
        runners["eager-triton-pdl"] = (GraphRunner(torch.inference_mode()(dependent), x1),
                                       None, x1)  # fmt: skip
    images = torch.randint(0, 256, (1, 224, 224, 3), dtype=torch.uint8, device=device)
    for name in args.engines.split(","):
        fuse = True if "triton" in name else "cudnn"
        image = IMAGENET if "-img" in name else None
        t0 = time.perf_counter()
        with engine_passes(name):
            engine = deploy.optimize(model, x, batch_sizes=(1,), image=image,
                                     compile="jit" if args.compile == "jit" else None,
                                     autotune="none", fuse=fuse)  # fmt: skip
        print(name, f"built in {time.perf_counter() - t0:.0f} s", flush=True)
        runners[name] = (engine.runners[1], engine, x1 if image is None else images)
    rows: dict[str, list[dict[str, Any]]] = {n: [] for n in runners}
    with torch.inference_mode():
        for _ in range(3):  # alternated: the machine is shared
            for name, (runner, engine, example) in runners.items():
                rows[name].append(measure(name, runner, engine, example))
        for name, (runner, _, example) in runners.items():  # last: see the module docstring
            rows[name].append(profiled(name, runner, example))
    keys = ("replay_host_us", "copy_host_us", "replay_us", "call_us", "back_us", "p50_us",
            "engine_p50_us")  # fmt: skip
    print(f"\n{'runner':16}" + "".join(f"{k:>15}" for k in keys) + "  (medians of 3 rounds)")
    for name, runs in rows.items():
        cells = [statistics.median(r[k] for r in runs if k in r) if any(k in r for r in runs)
                 else float("nan") for k in keys]  # fmt: skip
        print(f"{name:16}" + "".join(f"{c:>15.1f}" for c in cells))
    (OUT / "b1_launch_check.json").write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
