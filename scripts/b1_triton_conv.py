"""ResNet-50 at batch 1, fp16: cuDNN's fused convolutions against split-K Triton kernels.

``kiln.deploy``'s batch-1 engine is bound by cuDNN's convolution kernels (309 us in 53 calls,
3-16 us each; H200, 2026-11-28). ``kiln.deploy._triton_conv`` runs a batch-1 convolution as an
implicit GEMM split along K as well as M and N, reduced inside the kernel. This script takes the
folded, fp16, channels_last graph after ``FuseConvReLU`` (as ``optimize`` builds it), records each
convolution's inputs at batch 1 and, per convolution (slowest first, within ``--budget``
seconds):

- times cuDNN's fused call and every candidate tile / split configuration, ``--reps`` calls
  back to back in one CUDA graph (so the gaps between kernels count as in the engine);
- keeps the fastest candidate whose output matches cuDNN's within ``--tolerance``.

Then the whole graph, eager in one CUDA graph, with cuDNN's calls and with each convolution
where the Triton kernel won replaced by it: wall-clock p50 and each graph's mean replay time
(CUDA events), alternating the two variants, and the error against the fp32 model.

    python scripts/b1_triton_conv.py --json b1_triton.json   # on a GPU
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import multiprocessing
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import torch
from torch import fx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "scripts"))

from b1_conv_times import KINDS, Recorder, inner_input  # noqa: E402

from kiln import zoo  # noqa: E402
from kiln.deploy._benchmark import graph_time, time_calls  # noqa: E402
from kiln.deploy._capture import capture, eval_mode  # noqa: E402
from kiln.deploy._check import error  # noqa: E402
from kiln.deploy._cuda_graph import GraphRunner  # noqa: E402
from kiln.deploy._fold import FoldBatchNorm  # noqa: E402
from kiln.deploy._fuse_conv import FuseConvReLU  # noqa: E402
from kiln.deploy._passes import ChannelsLast  # noqa: E402
from kiln.deploy._precision import Precision  # noqa: E402
from kiln.deploy._triton_conv import Config, conv2d_b1, gemm_weight  # noqa: E402

SMS = 132


def layer_spec(target: Any, call: tuple[Any, ...]) -> dict[str, Any]:
    """The convolution's tensors and geometry from its recorded call."""
    x, w = call[0], call[1]
    if KINDS.get(target) == "add_relu":
        _, _, z, _, b, stride, padding, _, groups = call
        relu = True
    elif KINDS.get(target) == "relu":
        _, _, b, stride, padding, _, groups = call
        z, relu = None, True
    else:
        rest = list(call[2:]) + [None, [1, 1], [0, 0], [1, 1], 1][len(call) - 2 :]
        b, stride, padding, _, groups = rest[:5]
        z, relu = None, False
    return {"x": x, "w": w, "b": b, "z": z, "kernel": w.shape[2], "stride": int(stride[0]),
            "padding": int(padding[0]), "relu": relu, "groups": groups}  # fmt: skip


def candidates(m: int, n: int, k: int, c: int) -> list[Config]:
    """Tile and split choices that give between about a quarter wave and four waves of blocks;
    2 to 8 warps, 2 to 4 pipeline stages."""
    found = []
    block_ks = [64, 128] if c % 128 == 0 else [64]
    for bm, bn, bk in itertools.product((16, 32, 64, 128), (32, 64, 128), block_ks):
        if bn > max(32, n) or bm > max(16, 2 * m) or (bm == 128 and m < 784):
            continue
        tiles = -(-m // bm) * -(-n // bn)
        steps = k // bk
        splits = [s for s in (2, 3, 4, 6, 8, 12, 16, 24, 32)
                  if steps % s == 0 and SMS // 4 <= tiles * s <= 4 * SMS]  # fmt: skip
        if SMS // 4 <= tiles <= 8 * SMS or not splits:
            splits.insert(0, 1)
        warps = (2, 4) if bm * bn <= 32 * 64 else (4, 8)
        for split, warp, stages in itertools.product(splits, warps, (2, 3, 4)):
            found.append(Config(bm, bn, bk, split, warp, stages))
    return found


def precompile(jobs: list[tuple[Any, ...]], workers: int) -> Any:
    """Compile the kernels of ``jobs`` (``warm``'s arguments) in a process pool, in order, into
    Triton's on-disk cache, while the main process tunes (it compiles what is not there yet)."""
    pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"),
                               initializer=_worker_path)  # fmt: skip
    for job in jobs:
        pool.submit(_warm, job)
    return pool


def _worker_path() -> None:
    sys.path.insert(0, str(ROOT / "src"))


def _warm(job: tuple[Any, ...]) -> None:
    from kiln.deploy._triton_conv import warm

    try:
        warm(*job)
    except Exception as e:
        print(f"precompile {job}: {type(e).__name__}: {str(e)[:120]}", flush=True)


def run_layer(spec: dict[str, Any], config: Config, w_kn: torch.Tensor) -> torch.Tensor:
    return conv2d_b1(spec["x"], w_kn, spec["b"], spec["z"], spec["kernel"], spec["stride"],
                     spec["padding"], spec["relu"], config)  # fmt: skip


def tune_layer(spec: dict[str, Any], reference: torch.Tensor, reps: int,
               tolerance: float) -> tuple[Config | None, float, int]:  # fmt: skip
    """(fastest matching config, its us per call, candidates tried)."""
    x, w = spec["x"], spec["w"]
    c, m = x.shape[1], reference.shape[2] * reference.shape[3]
    w_kn = gemm_weight(w)
    best: tuple[Config | None, float] = (None, float("inf"))
    tried = 0
    for config in candidates(m, w.shape[0], w_kn.shape[0], c):
        try:
            out = run_layer(spec, config, w_kn)
            torch.cuda.synchronize()
        except Exception as e:  # a config Triton cannot build here (shared memory, registers)
            print(f"  {config.key()}: {type(e).__name__}: {str(e)[:120]}", flush=True)
            continue
        tried += 1
        if error(out, reference)[1] > tolerance:
            print(f"  {config.key()}: error {error(out, reference)[1]:.2e}", flush=True)
            continue
        us = graph_time(lambda: run_layer(spec, config, w_kn), reps)  # noqa: B023
        if us < best[1]:
            best = (config, us)
    return best[0], best[1], tried


def replace_convs(gm: fx.GraphModule, chosen: dict[fx.Node, tuple[dict[str, Any], Config]]) -> None:
    """Each chosen convolution node becomes a ``conv2d_b1`` call with its config."""
    for i, (node, (spec, config)) in enumerate(chosen.items()):
        name = f"_triton_w{i}"
        gm.register_buffer(name, gemm_weight(spec["w"]))
        bias_name = f"_triton_b{i}"
        if spec["b"] is not None:
            gm.register_buffer(bias_name, spec["b"])
        z_node = node.args[2] if KINDS.get(node.target) == "add_relu" else None
        with gm.graph.inserting_before(node):
            w_node = gm.graph.get_attr(name)
            b_node = gm.graph.get_attr(bias_name) if spec["b"] is not None else None
            new = gm.graph.call_function(_conv_call, (
                node.args[0], w_node, b_node, z_node, spec["kernel"], spec["stride"],
                spec["padding"], spec["relu"], list(dataclasses.astuple(config))))  # fmt: skip
        new.meta.update(node.meta)
        node.replace_all_uses_with(new)
        gm.graph.erase_node(node)
    gm.graph.eliminate_dead_code()
    gm.recompile()


def _conv_call(x: torch.Tensor, w_kn: torch.Tensor, bias: torch.Tensor | None,
               z: torch.Tensor | None, kernel: int, stride: int, padding: int, relu: bool,
               config: list[int]) -> torch.Tensor:  # fmt: skip
    return conv2d_b1(x, w_kn, bias, z, kernel, stride, padding, relu, Config(*config))


def replay_us(runner: GraphRunner, x: torch.Tensor, replays: int = 200) -> float:
    """Mean microseconds per replay, CUDA events around ``replays`` back-to-back replays."""
    runner(x)
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(replays):
        runner.graph.replay()
    end.record()
    end.synchronize()
    return start.elapsed_time(end) * 1e3 / replays


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=20)
    parser.add_argument("--budget", type=float, default=360.0, help="seconds for the tuning")
    parser.add_argument("--tolerance", type=float, default=2e-3)
    parser.add_argument("--workers", type=int, default=15, help="processes compiling kernels")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    torch.backends.cudnn.benchmark = True
    torch.manual_seed(0)
    device = torch.device("cuda")
    model = eval_mode(zoo.create_model("resnet50")).to(device)
    x = torch.randn(2, 3, 224, 224, device=device)
    module = capture(model, x).module()
    for p in (FoldBatchNorm(), Precision(torch.float16), ChannelsLast()):
        module = p.apply(module)
    fused = FuseConvReLU().apply(module)
    gm = next(m for m in fused.modules() if isinstance(m, fx.GraphModule))
    x1 = x[:1].contiguous()
    recorder = Recorder(gm)
    with torch.no_grad():
        recorder.run(inner_input(fused, gm, x1))
    rows: list[dict[str, Any]] = []
    chosen: dict[fx.Node, tuple[dict[str, Any], Config]] = {}
    by_shape: dict[str, tuple[Config | None, float, float]] = {}
    started = time.perf_counter()
    with torch.no_grad():
        timed = []
        for i, (node, call) in enumerate(recorder.calls):
            spec = layer_spec(node.target, call)
            reference = node.target(*call)
            cudnn = graph_time(lambda: node.target(*call), args.reps)  # noqa: B023
            timed.append((cudnn, i, node, spec, reference))
        timed.sort(key=lambda t: -t[0])
        jobs = []
        for _, _, _, spec, reference in timed:
            c, h, w = spec["x"].shape[1:]
            n, m = spec["w"].shape[0], reference.shape[2] * reference.shape[3]
            if c % 64 == 0 and spec["groups"] == 1:
                jobs += [(c, h, w, n, spec["kernel"], spec["stride"], spec["padding"],
                          spec["b"] is not None, spec["z"] is not None, spec["relu"], config)
                         for config in candidates(m, n, spec["kernel"] ** 2 * c, c)]  # fmt: skip
        jobs = list(dict.fromkeys(jobs))
        print(f"{len(jobs)} kernels to compile", flush=True)
        pool = precompile(jobs, args.workers)
        for cudnn, i, node, spec, reference in timed:
            row: dict[str, Any] = {"i": i, "kind": KINDS.get(node.target, "plain"),
                                   "in": list(spec["x"].shape[1:]), "w": list(spec["w"].shape),
                                   "stride": spec["stride"], "cudnn": round(cudnn, 2)}  # fmt: skip
            if spec["x"].shape[1] % 64 or spec["groups"] != 1:
                row["triton"] = None
                rows.append(row)
                continue
            key = f"{row['kind']}{row['in']}{row['w']}{spec['stride']}"
            if key not in by_shape:
                if time.perf_counter() - started > args.budget:
                    rows.append(row)
                    continue
                t0 = time.perf_counter()
                config, us, tried = tune_layer(spec, reference, args.reps, args.tolerance)
                by_shape[key] = (config, us, time.perf_counter() - t0)
                row["tried"] = tried
            config, us, seconds = by_shape[key]
            if config is not None:
                w_kn = gemm_weight(spec["w"])
                out = run_layer(spec, config, w_kn)
                row.update(triton=round(us, 2), config=config.key(),
                           err=float(f"{error(out, reference)[1]:.2g}"),
                           tune_s=round(seconds, 1))  # fmt: skip
                if us < cudnn:
                    chosen[node] = (spec, config)
            rows.append(row)
            print(json.dumps(row), flush=True)
        pool.shutdown(wait=False, cancel_futures=True)
        rows.sort(key=lambda r: r["i"])
        replaced = FuseConvReLU().apply(module)  # a second copy of the fused graph to rewrite
        gm2 = next(m for m in replaced.modules() if isinstance(m, fx.GraphModule))
        by_name = {n.name: n for n in gm2.graph.nodes}
        replace_convs(gm2, {by_name[node.name]: v for node, v in chosen.items()})
        reference = model(x1).float()
        runners = {name: GraphRunner(torch.inference_mode()(m), x1)
                   for name, m in (("cudnn", fused), ("triton", replaced))}  # fmt: skip
        whole: dict[str, Any] = {n: {"p50_us": [], "replay_us": []} for n in runners}
        for _ in range(2):
            for name, runner in runners.items():
                times = sorted(time_calls(lambda: runner(x1), 300, device))  # noqa: B023
                whole[name]["p50_us"].append(round(times[len(times) // 2] * 1e6, 1))
                whole[name]["replay_us"].append(round(replay_us(runner, x1), 1))
                whole[name]["rel_err"] = float(f"{error(runner(x1).float(), reference)[1]:.3g}")
    print(f"\n{'#':>3} {'kind':8} {'input':>16} {'weight':>20} {'s':>2} {'cudnn':>7} "
          f"{'triton':>7}  config (us per call)")  # fmt: skip
    for r in rows:
        tri = f"{r['triton']:>7.2f}" if r.get("triton") else f"{'-':>7}"
        print(f"{r['i']:>3} {r['kind']:8} {r['in']!s:>16} {r['w']!s:>20} {r['stride']:>2} "
              f"{r['cudnn']:>7.2f} {tri}  {r.get('config', '')}")  # fmt: skip
    cudnn_sum = sum(r["cudnn"] for r in rows)
    best = sum(min(r["cudnn"], r.get("triton") or 1e9) for r in rows)
    print(f"sum cuDNN {cudnn_sum:.1f} us; best of cuDNN / Triton per layer {best:.1f} us; "
          f"{len(chosen)} of {len(rows)} convolutions replaced")  # fmt: skip
    print("whole graph, eager in a CUDA graph:", json.dumps(whole))
    if args.json:
        args.json.write_text(json.dumps({"gpu": torch.cuda.get_device_name(),
                                         "torch": torch.__version__, "rows": rows,
                                         "whole": whole}, indent=1))  # fmt: skip


if __name__ == "__main__":
    main()
