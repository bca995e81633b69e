"""ResNet-50 with and without cuDNN's fused convolution + bias (+ add) + ReLU calls, by kernel.

``kiln.deploy``'s ``FuseConvReLU`` pass runs each convolution with its bias, ReLU and residual add
as one cuDNN call (``aten.cudnn_convolution_relu`` / ``cudnn_convolution_add_relu``) instead of
a cuDNN convolution and an Inductor kernel for the rest. This script times, at each batch size,
one CUDA graph per variant (wall clock and CUDA events), counts each variant's kernels in one call
(outside a graph) with their summed GPU time, and profiles one replay of the first size's graph:
its span on the GPU, kernels and idle time between them. The profiles come after every
variant's timings: until 2026-11-28 each variant was profiled right after its own timings, so
every variant but the first was timed after a profile, with the host's CUDA calls slowed
(``scripts/b1_launch_check.py``); the wall clock then moved by up to 50 us between two runs of
one variant. The variants:

- kiln: ``kiln.deploy.optimize(..., compile="jit", autotune=--autotune)``, the pass on;
- kiln-nofuse: the same with ``fuse=False``;
- eager: the folded fp16 channels_last graph, eager (conv, bias, ReLU, add each a kernel);
- eager-fused: that graph after the pass, eager;
- kiln-pad4 / kiln-pad8 (only with --runs): kiln with the stem convolution's 3 input channels
  padded to 4 or 8 with zeros (an experiment: cuDNN's NHWC kernels favour such counts;
  2026-11-28, H200: no gain);
- kiln-s2d (only with --runs): kiln with ``SpaceToDepthStem`` (``kiln.deploy._space_to_depth``):
  the stem as a 4x4 stride-1 convolution on 16 channels (2026-11-28, H200, then before the
  fusion and at every size: the stem's kernel 13-16 -> 9 us, batch 1's graph 6.5 us shorter,
  batch 64/256 1.3-1.5% slower; since then the pass rewrites the batch-1 graph only, after
  the fusion);
- kiln-noprologue (only with --runs): kiln with Inductor's prologue fusion off (2026-11-28,
  H200: autotuned, the head still ran as one 42 us Triton template with the pool inside);
- kiln-triton (only with --runs): kiln as ``optimize`` builds it by default since
  2026-11-28: at batch 1 also kiln's split-K Triton convolutions where they time faster than
  cuDNN's calls (``TritonConv``) and the space-to-depth stem; "kiln" is ``fuse="cudnn"``;
- kiln-tuned (only with --runs): kiln with ``autotune="small"`` whatever ``--autotune`` says;
- a run name may end in ``@N`` to run the same variant again (``kiln@2``): builds and timings
  of one variant vary, and alternating them shows by how much;
- kiln-no1x1 (only with --runs): the pass leaves 1x1 convolutions to Inductor, which under
  max-autotune (``--autotune small``) runs them as matrix products with fused epilogues
  (2026-11-28, H200: 0.426 ms at batch 1 against kiln's 0.376, 91 kernels against 60).

    python scripts/fused_conv_check.py --sizes 1,64,256 --json fused.json   # on a GPU
"""

from __future__ import annotations

import argparse
import contextlib
import json
import re
import sys
import time
import traceback
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from torch import fx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from kiln import deploy, zoo  # noqa: E402
from kiln.deploy import _optimize as optimize_module  # noqa: E402
from kiln.deploy._benchmark import time_calls  # noqa: E402
from kiln.deploy._capture import capture, eval_mode  # noqa: E402
from kiln.deploy._check import error  # noqa: E402
from kiln.deploy._cuda_graph import GraphRunner  # noqa: E402
from kiln.deploy._fold import FoldBatchNorm  # noqa: E402
from kiln.deploy._fuse_conv import FuseConvReLU  # noqa: E402
from kiln.deploy._passes import ChannelsLast, Pass, copy_module, graph_constant  # noqa: E402
from kiln.deploy._precision import Precision  # noqa: E402
from kiln.deploy._space_to_depth import SpaceToDepthStem  # noqa: E402


class StemPad(Pass):
    """The first convolution with 3 input channels takes ``channels`` instead: zero weights
    and an input padded with zero channels (cuDNN's NHWC kernels favour channel counts of
    4 or 8). An experiment, not a kiln pass."""

    tolerance = 1e-3

    def __init__(self, channels: int) -> None:
        self.channels, self.name = channels, f"stem_pad{channels}"

    def apply(self, module: torch.nn.Module) -> torch.nn.Module:
        module = copy_module(module)
        for gm in [m for m in module.modules() if isinstance(m, fx.GraphModule)]:
            for node in gm.graph.nodes:
                if "conv" not in str(node.target) or node.op != "call_function":
                    continue
                weight = graph_constant(gm, node.args[1].target)
                if weight.shape[1] != 3:
                    break
                extra = self.channels - 3
                gm.register_buffer(
                    "_stem_weight",
                    torch.nn.functional.pad(weight, (0, 0, 0, 0, 0, extra)).contiguous(
                        memory_format=torch.channels_last
                    ),
                )
                with gm.graph.inserting_before(node):
                    padded = gm.graph.call_function(
                        torch.ops.aten.constant_pad_nd.default,
                        (node.args[0], [0, 0, 0, 0, 0, extra], 0.0),
                    )
                    padded = gm.graph.call_function(
                        torch.ops.aten.clone.default, (padded,),
                        {"memory_format": torch.channels_last})  # fmt: skip
                    stem = gm.graph.get_attr("_stem_weight")
                node.args = (padded, stem, *node.args[2:])
                gm.recompile()
                break
        return module


def kernels(fn: Any, x: torch.Tensor, top: int = 0) -> tuple[int, float]:
    """Kernels launched by one call of ``fn`` and their summed GPU time (ms); prints the
    ``top`` slowest, in launch order."""
    from torch.profiler import ProfilerActivity, profile

    fn(x)
    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        fn(x)
        torch.cuda.synchronize()
    events = [e for e in prof.events() if e.device_type == torch.autograd.DeviceType.CUDA]
    times = [e.device_time / 1000 for e in events]  # type: ignore[attr-defined]
    if top:
        slowest = sorted(range(len(events)), key=lambda i: -times[i])[:top]
        for i in sorted(slowest):
            print(f"  #{i:3d} {times[i] * 1e3:7.1f} us  {events[i].name[:110]}")
    return len(events), sum(times)


def replay_gaps(fn: Any, x: torch.Tensor, top: int = 8) -> dict[str, float]:
    """One call of a CUDA-graph runner profiled: the span from the first kernel's start to the
    last one's end, the kernels' time, and the idle time between them (the ``top`` longest
    gaps printed with the kernels around them)."""
    from torch.profiler import ProfilerActivity, profile

    fn(x)
    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        fn(x)
        torch.cuda.synchronize()
    events = sorted((e for e in prof.events() if e.device_type == torch.autograd.DeviceType.CUDA),
                    key=lambda e: e.time_range.start)  # fmt: skip
    if not events:
        return {}
    gaps = [(events[i + 1].time_range.start - events[i].time_range.end, i)
            for i in range(len(events) - 1)]  # fmt: skip
    for gap, i in sorted(gaps, reverse=True)[:top]:
        after, before = events[i].name[:60], events[i + 1].name[:40]
        print(f"  gap {gap:6.1f} us after #{i:3d} {after} -> {before}")
    span = events[-1].time_range.end - events[0].time_range.start
    busy = sum(e.time_range.end - e.time_range.start for e in events)
    return {"span_us": round(span, 1), "busy_us": round(busy, 1), "idle_us": round(span - busy, 1),
            "kernels": len(events)}  # fmt: skip


def gpu_time(fn: Any, x: torch.Tensor, calls: int = 200) -> float:
    """Median ms of one call on the GPU (CUDA events around it): the host's share left out,
    steadier than the wall clock on a shared machine."""
    times = []
    for _ in range(calls):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn(x)
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end))
    return sorted(times)[len(times) // 2]


@contextlib.contextmanager
def kiln_passes(run: str) -> Iterator[None]:
    """kiln's passes as the ``run`` asks: "-pad<N>" adds ``StemPad(N)`` last; "-no1x1" leaves
    1x1 convolutions out of ``FuseConvReLU``; "-s2d" adds ``SpaceToDepthStem``."""
    original = optimize_module._passes
    pad = int(found.group(1)) if (found := re.search(r"-pad(\d+)", run)) else 0

    def passes(*args: Any) -> list[Pass]:
        chosen = [FuseConvReLU(one_by_one=False) if "-no1x1" in run and isinstance(p, FuseConvReLU)
                  else p for p in original(*args)]  # fmt: skip
        if "-s2d" in run and not any(isinstance(p, SpaceToDepthStem) for p in chosen):
            chosen.append(SpaceToDepthStem())  # the batch-1 graph's (Pass.batch_sizes)
        return [*chosen, StemPad(pad)] if pad else chosen

    optimize_module._passes = passes  # type: ignore[assignment]
    try:
        yield
    finally:
        optimize_module._passes = original  # type: ignore[assignment]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1,64,256")
    parser.add_argument("--runs", default="kiln,kiln-nofuse,eager,eager-fused")
    parser.add_argument("--calls", type=int, default=300)
    parser.add_argument("--autotune", default="none", choices=["none", "small", "all"],
                        help="the kiln rows' (small: max-autotune for batch 1)")  # fmt: skip
    parser.add_argument("--aot", action="store_true",
                        help="the kiln rows as AOTInductor packages (default: compiled in "
                             "process, compile='jit')")  # fmt: skip
    parser.add_argument("--json", type=Path)
    parser.add_argument("--top", type=int, default=12, help="slowest kernels to list per row")
    parser.add_argument("--benchmark-limit", type=int, default=None,
                        help="torch.backends.cudnn.benchmark_limit (cuDNN plans tried per "
                             "convolution; 0: all) for the whole run")  # fmt: skip
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    device = torch.device("cuda")
    torch.backends.cudnn.benchmark = True
    if args.benchmark_limit is not None:
        torch.backends.cudnn.benchmark_limit = args.benchmark_limit
    torch.manual_seed(0)
    model = eval_mode(zoo.create_model("resnet50")).to(device)
    x = torch.randn(max(sizes), 3, 224, 224, device=device)
    with torch.no_grad():
        reference = model(x).float()
    module = capture(model, x[:2]).module()
    for p in (FoldBatchNorm(), Precision(torch.float16), ChannelsLast()):
        module = p.apply(module)
    gm = next(m for m in module.modules() if isinstance(m, fx.GraphModule))
    print(f"{sum(1 for n in gm.graph.nodes if n.op == 'call_function')} ops in the folded graph")
    results: dict[str, Any] = {"gpu": torch.cuda.get_device_name(), "torch": torch.__version__,
                               "rows": {}}  # fmt: skip
    built: dict[str, tuple[dict[int, Any], Any]] = {}
    for run in args.runs.split(","):
        row: dict[str, Any] = {}
        results["rows"][run] = row
        started = time.perf_counter()
        try:
            if run.startswith("kiln"):
                with kiln_passes(run):
                    inductor = {"prologue_fusion": False} if "-noprologue" in run else None
                    autotune = "small" if "-tuned" in run else args.autotune
                    fuse = True if "-triton" in run else "cudnn" if "-nofuse" not in run else False
                    engine = deploy.optimize(model, x[:2], batch_sizes=sizes,
                                             compile=True if args.aot else "jit",
                                             autotune=autotune, fuse=fuse,
                                             inductor=inductor, verbose=False)  # fmt: skip
                fns = {s: engine.runners[s] for s in sizes}
                plain = getattr(fns[sizes[0]], "source", None)
                row["passes"] = [p["name"] for p in engine.info["passes"]]
            else:
                candidate = module
                if run.split("@")[0] == "eager-fused":
                    fuse = FuseConvReLU()
                    candidate = fuse.apply(module)
                    row.update(fuse.describe())
                plain = torch.inference_mode()(candidate)
                fns = {s: GraphRunner(plain, x[:s].contiguous()) for s in sizes}
            row["build_s"] = round(time.perf_counter() - started, 1)
            for s in fns:
                out = fns[s](x[:s].contiguous()).float()
                _, rel = error(out, reference[:s])
                fn, batch = fns[s], x[:s].contiguous()
                times = sorted(time_calls(lambda: fn(batch), args.calls, device))  # noqa: B023
                p50 = times[len(times) // 2] * 1e3
                mean = sum(times) / len(times)
                row[str(s)] = {"p50_ms": round(p50, 4), "img_s": round(s / mean),
                               "gpu_ms": round(gpu_time(fn, batch), 4),
                               "rel_err": float(f"{rel:.3g}")}  # fmt: skip
            built[run] = (fns, plain)
        except Exception as e:  # one variant's failure is a row, not the end of the run
            row["error"] = f"{type(e).__name__}: {str(e)[:400]}"
            traceback.print_exc()
        print(run, json.dumps(row), flush=True)
        if args.json:  # after each row: a crash in a later one keeps the earlier
            args.json.write_text(json.dumps(results, indent=1))
    # the profiles after every timing: once torch's profiler has run, each CUDA call costs the
    # host more for the rest of the process (graph.replay(): 3-14 us before, 37-47 us after;
    # H200, 2026-11-28, scripts/b1_launch_check.py), which the wall clock of later rows counted
    for run, (fns, plain) in built.items():
        row = results["rows"][run]
        print(f"{run}:")
        if plain is not None:
            count, busy = kernels(plain, x[: sizes[0]].contiguous(), args.top)
            row["kernels"], row["kernel_ms"] = count, round(busy, 4)
        row["replay"] = replay_gaps(fns[sizes[0]], x[: sizes[0]].contiguous())
        print(f"  replayed graph, batch {sizes[0]}: {row['replay']}", flush=True)
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    print(f"\n{'variant':16}" + "".join(f"{'b=' + str(s) + ' ms':>12}{'event ms':>9}{'img/s':>9}"
                                         for s in sizes)
          + f"{'err':>9}{'kernels':>9}{'GPU ms':>9}")  # fmt: skip
    for run, row in results["rows"].items():
        if "error" in row:
            print(f"{run:16} {row['error'][:100]}")
            continue
        cells = "".join(f"{row[str(s)]['p50_ms']:>12.4f}{row[str(s)]['gpu_ms']:>9.4f}"
                        f"{row[str(s)]['img_s']:>9}"
                        if str(s) in row else f"{'-':>12}{'-':>18}" for s in sizes)  # fmt: skip
        print(f"{run:16}{cells}{row[str(sizes[0])]['rel_err']:>9.2g}"
              f"{row.get('kernels', '-'):>9}{row.get('kernel_ms', '-'):>9}")  # fmt: skip


if __name__ == "__main__":
    main()
