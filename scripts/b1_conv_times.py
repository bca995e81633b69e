"""ResNet-50 at batch 1, fp16: each convolution's time as kiln runs it, and what else could run it.

kiln's engine at batch 1 is bound by cuDNN's fused convolution kernels (0.347 ms of GPU time,
60 kernels; H200, 2026-11-28). This script takes the folded, fp16, channels_last graph after
``FuseConvReLU`` (as ``optimize`` builds it), records each convolution's inputs at batch 1 and
times, per convolution, ``--reps`` back-to-back calls captured in one CUDA graph (so launch
gaps count as they do in the engine's graph):

- ``fused``: the call in kiln's graph (cuDNN's fused convolution + bias (+ add) + ReLU);
- ``conv``: cuDNN's plain convolution with the same weights (no bias, add or ReLU);
- ``lt``: 1x1 convolutions as cuBLASLt matrix products, ``_addmm_activation`` (bias and ReLU
  in its epilogue) without a residual add, ``addmm`` (the add, no bias or ReLU) with one;
- ``s2d``: the stem as ``SpaceToDepthStem`` rewrites it (a 4x4 stride-1 convolution on 16
  channels), the input's rearrangement not counted (Inductor fuses it into the input cast);
- ``tuned`` (``--tuned N``): the N slowest 1x1 layers as ``relu(x @ w + b [+ z])`` compiled
  by Inductor with max-autotune (its GEMM templates, split-K among them where it has one).

Then the whole graph, eager in one CUDA graph, with and without ``SpaceToDepthStem`` (wall
clock p50 of a call, as ``fused_conv_check.py`` times).

    python scripts/b1_conv_times.py --json b1_convs.json   # on a GPU
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import torch
from torch import fx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from kiln import zoo  # noqa: E402
from kiln.deploy._benchmark import graph_time, time_calls  # noqa: E402
from kiln.deploy._capture import capture, eval_mode  # noqa: E402
from kiln.deploy._check import error  # noqa: E402
from kiln.deploy._cuda_graph import GraphRunner  # noqa: E402
from kiln.deploy._fold import FoldBatchNorm  # noqa: E402
from kiln.deploy._fuse_conv import FuseConvReLU  # noqa: E402
from kiln.deploy._passes import ChannelsLast  # noqa: E402
from kiln.deploy._precision import Precision  # noqa: E402
from kiln.deploy._space_to_depth import SpaceToDepthStem, space_to_depth_weight  # noqa: E402

aten = torch.ops.aten
CONVS = {aten.cudnn_convolution_relu.default, aten.cudnn_convolution_add_relu.default,
         aten.conv2d.default}  # fmt: skip
KINDS = {aten.cudnn_convolution_relu.default: "relu",
         aten.cudnn_convolution_add_relu.default: "add_relu"}  # fmt: skip


class Recorder(fx.Interpreter):
    """Runs the graph, keeping each convolution node's arguments."""

    def __init__(self, gm: fx.GraphModule) -> None:
        super().__init__(gm)
        self.calls: list[tuple[fx.Node, tuple[Any, ...]]] = []

    def run_node(self, n: fx.Node) -> Any:
        if n.op == "call_function" and n.target in CONVS:
            args, kwargs = self.fetch_args_kwargs_from_env(n)
            assert not kwargs
            self.calls.append((n, args))
        return super().run_node(n)


def inner_input(module: torch.nn.Module, gm: fx.GraphModule, x: torch.Tensor) -> torch.Tensor:
    seen: list[torch.Tensor] = []
    handle = gm.register_forward_pre_hook(lambda _m, a: seen.append(a[0]))
    module(x)
    handle.remove()
    return seen[0]


def as_matrix(x: torch.Tensor) -> torch.Tensor:
    """A channels_last (N, C, H, W) tensor as the (N*H*W, C) matrix it is in memory."""
    return x.permute(0, 2, 3, 1).reshape(-1, x.shape[1])


def alternatives(target: Any, args: tuple[Any, ...]) -> dict[str, Any]:
    x, w = args[0], args[1]
    found: dict[str, Any] = {}
    if target is aten.cudnn_convolution_add_relu.default:
        _, _, z, _, b, stride, padding, dilation, groups = args
    elif target is aten.cudnn_convolution_relu.default:
        _, _, b, stride, padding, dilation, groups = args
        z = None
    else:
        b, stride, padding, dilation, groups = (list(args[2:]) + [None, [1, 1], [0, 0], [1, 1], 1][
            len(args) - 2:])  # fmt: skip
        z = None
    found["conv"] = lambda: aten.convolution(x, w, None, stride, padding, dilation, False,
                                             [0, 0], groups)  # fmt: skip
    if w.shape[2:] == (1, 1) and list(stride) == [1, 1] and groups == 1:
        x2d, wt = as_matrix(x), w.reshape(w.shape[0], -1).t()
        if z is None and b is not None:
            found["lt"] = lambda: torch._addmm_activation(b, x2d, wt)
        elif z is not None:
            z2d = as_matrix(z)
            found["lt"] = lambda: torch.addmm(z2d, x2d, wt)
    if w.shape[1] <= 4 and list(stride) == [2, 2]:
        ws = space_to_depth_weight(w).contiguous(memory_format=torch.channels_last)
        ph, pw = padding
        h, wd = x.shape[2:]
        xp = torch.nn.functional.pad(x, (pw, pw + (wd + 2 * pw) % 2, ph, ph + (h + 2 * ph) % 2))
        c = x.shape[1]
        cells = xp.reshape(1, c, xp.shape[2] // 2, 2, xp.shape[3] // 2, 2)
        xs = cells.permute(0, 1, 3, 5, 2, 4).reshape(1, 4 * c, *cells.shape[2:5:2])
        xs = torch.nn.functional.pad(xs, (0, 0, 0, 0, 0, ws.shape[1] - 4 * c))
        xs = xs.contiguous(memory_format=torch.channels_last)
        found["s2d"] = lambda: aten.cudnn_convolution_relu(xs, ws, b, [1, 1], [0, 0], [1, 1], 1)
    return found


def tuned(args: tuple[Any, ...], target: Any) -> Any:
    """``relu(x @ w + b [+ z])`` compiled with max-autotune, for a 1x1 stride-1 layer."""
    x, w = args[0], args[1]
    x2d, wt = as_matrix(x), w.reshape(w.shape[0], -1).t().contiguous()
    if target is aten.cudnn_convolution_add_relu.default:
        z2d, b = as_matrix(args[2]), args[4]

        def fn(a: torch.Tensor, m: torch.Tensor, zz: torch.Tensor) -> torch.Tensor:
            return torch.relu(a @ m + b + zz)

        compiled = torch.compile(fn, mode="max-autotune-no-cudagraphs", dynamic=False)
        return lambda: compiled(x2d, wt, z2d)
    b = args[2]

    def fn1(a: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
        return torch.relu(a @ m + b)

    compiled1 = torch.compile(fn1, mode="max-autotune-no-cudagraphs", dynamic=False)
    return lambda: compiled1(x2d, wt)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=20)
    parser.add_argument("--tuned", type=int, default=6, help="slowest 1x1 layers to autotune")
    parser.add_argument("--tune-budget", type=float, default=180.0, help="seconds, at most")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    torch.backends.cudnn.benchmark = True
    torch.manual_seed(0)
    device = torch.device("cuda")
    model = eval_mode(zoo.create_model("resnet50")).to(device)
    x = torch.randn(2, 3, 224, 224, device=device)
    passes = [FoldBatchNorm(), Precision(torch.float16), ChannelsLast()]
    module = capture(model, x).module()
    for p in passes:
        module = p.apply(module)
    stemmed = SpaceToDepthStem().apply(module)
    fused, fused_s2d = FuseConvReLU().apply(module), FuseConvReLU().apply(stemmed)
    gm = next(m for m in fused.modules() if isinstance(m, fx.GraphModule))
    x1 = x[:1].contiguous()
    recorder = Recorder(gm)
    with torch.no_grad():
        recorder.run(inner_input(fused, gm, x1))
    rows: list[dict[str, Any]] = []
    with torch.no_grad():
        for i, (node, call) in enumerate(recorder.calls):
            target = node.target
            kind = KINDS.get(target, "plain")
            w = call[1]
            row: dict[str, Any] = {
                "i": i, "kind": kind, "in": list(call[0].shape[1:]), "w": list(w.shape),
                "stride": list(call[5 if kind == "add_relu" else 3] if len(call) > 3 else [1, 1]),
                "fused": round(graph_time(lambda: target(*call), args.reps), 2),  # noqa: B023
            }  # fmt: skip
            for name, fn in alternatives(target, call).items():
                row[name] = round(graph_time(fn, args.reps), 2)
            rows.append(row)
            print(json.dumps(row), flush=True)
        ones = sorted((r for r in rows if r["w"][2:] == [1, 1] and r["stride"] == [1, 1]),
                      key=lambda r: -r["fused"])  # fmt: skip
        started = time.perf_counter()
        done_shapes: dict[str, float] = {}
        for r in ones[: args.tuned]:
            if time.perf_counter() - started > args.tune_budget:
                break
            node, call = recorder.calls[r["i"]]
            key = f"{r['kind']}{r['in']}{r['w']}"
            if key not in done_shapes:
                try:
                    done_shapes[key] = round(graph_time(tuned(call, node.target), args.reps), 2)
                except Exception as e:
                    print(f"tuned {key}: {type(e).__name__}: {str(e)[:200]}")
                    continue
            r["tuned"] = done_shapes[key]
            print(json.dumps(r), flush=True)
        whole: dict[str, Any] = {}
        x_in = x1.contiguous()
        reference = model(x_in).float()
        for name, candidate in (("fused", fused), ("fused_s2d", fused_s2d)):
            runner = GraphRunner(torch.inference_mode()(candidate), x_in)
            out = runner(x_in).float()
            times = sorted(time_calls(lambda: runner(x_in), 300, device))  # noqa: B023
            whole[name] = {"p50_us": round(times[len(times) // 2] * 1e6, 1),
                           "rel_err": float(f"{error(out, reference)[1]:.3g}")}  # fmt: skip
    print(f"\n{'#':>3} {'kind':8} {'input':>16} {'weight':>20} {'s':>2} {'fused':>7} {'conv':>7}"
          f" {'lt':>7} {'s2d':>7} {'tuned':>7}  (us per call)")  # fmt: skip
    for r in rows:
        cells = "".join(f" {r[k]:>7.2f}" if k in r else f" {'-':>7}"
                        for k in ("fused", "conv", "lt", "s2d", "tuned"))  # fmt: skip
        print(f"{r['i']:>3} {r['kind']:8} {r['in']!s:>16} {r['w']!s:>20} "
              f"{r['stride'][0]:>2}{cells}")  # fmt: skip
    total = sum(r["fused"] for r in rows)
    best = sum(min(r.get(k, 1e9) for k in ("fused", "lt", "s2d", "tuned")) for r in rows)
    print(f"sum fused {total:.1f} us; best of fused/lt/s2d/tuned per layer {best:.1f} us "
          f"(lt's add layers lack their bias + ReLU kernel)")  # fmt: skip
    print("whole graph, eager in a CUDA graph:", json.dumps(whole))
    if args.json:
        args.json.write_text(json.dumps({"gpu": torch.cuda.get_device_name(),
                                         "torch": torch.__version__, "rows": rows,
                                         "whole": whole}, indent=1))  # fmt: skip


if __name__ == "__main__":
    main()
