"""ResNet-50 inference on one GPU: kiln.deploy against what users would pick instead.

Every row runs in this one process on one card, one after another, on the same random-weight
model (``kiln.zoo.create_model("resnet50")``) and random inputs:

- eager-fp32: the module in fp32 under ``inference_mode``;
- eager-fp16-cl: fp16 weights, channels_last, inputs handed over already in fp16 NHWC;
- eager-cudagraph: that eager fp16 module captured in one CUDA graph per batch size;
- compile-reduce-overhead: ``torch.compile(mode="reduce-overhead")`` of it (CUDA graphs too);
- kiln-fp16 / kiln-bf16 / kiln-fp8: ``kiln.deploy.optimize`` with ``image=`` ImageNet
  normalization: they take the uint8 NHWC images `kiln serve` receives and return fp32 (the
  normalization and the casts run inside), so the stored kiln-fp16 engine is the one
  ``serve_http.py --repository`` serves. The competitors get their inputs already normalized.

Every row's reference inputs are random uint8 images, normalized; kiln's rows get the images.

Latency is one call at batch 1 (p50, p99), waited for with ``synchronize``; throughput is batch /
mean latency per batch size. ``rel err`` is max |out - ref| / max |ref| against eager fp32 with
TF32 off. Cold start: a fresh process that imports kiln, loads the stored kiln-fp16 repository
(AOTInductor packages, every batch size captured in its CUDA graph) and runs one call.

``--repository DIR`` builds kiln-fp16 once for both benchmarks: when ``DIR/<model>`` holds a
kiln-fp16 engine of these batch sizes, image size, autotune and device kind, the row loads it
("source": "repository" in its JSON, "build s" is the load) instead of building; otherwise it
builds and saves it there. Then ``serve_http.py --repository DIR`` serves that engine:

    python benchmarks/inference.py --only kiln-fp16,eager-cudagraph --repository /tmp/repo
    python benchmarks/serve_http.py --repository /tmp/repo --model resnet50

    python benchmarks/inference.py --out inference.json              # H100: the whole table
    python benchmarks/inference.py --only kiln-fp16,eager-cudagraph   # a subset
    python benchmarks/inference.py --smoke                            # CPU, tiny: CI

Compile-heavy rows (compile-reduce-overhead, kiln-bf16, kiln-fp8) are timed at
``--side-batch-sizes`` (default 1 and the largest) to keep the run within minutes. Exits 1 when
kiln-fp16 fails.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

import kiln  # noqa: E402
from kiln import deploy  # noqa: E402
from kiln.deploy._benchmark import time_calls, timing  # noqa: E402
from kiln.deploy._check import error, strict_fp32  # noqa: E402
from kiln.deploy._image_input import Normalize  # noqa: E402

Fn = Callable[[torch.Tensor], torch.Tensor]
ROWS = ["eager-fp32", "eager-fp16-cl", "eager-cudagraph", "compile-reduce-overhead",
        "kiln-fp16", "kiln-bf16", "kiln-fp8"]  # fmt: skip
# ablations, only with --only: kiln's BatchNorm folding off (Inductor's freezing folds instead),
# max-autotune off for the small batches, every fused convolution off, and cuDNN's fused calls
# alone (fuse="cudnn": batch 1 without kiln's Triton convolutions, the default until 2026-11-28)
EXTRA_ROWS = ["kiln-fp16-nofold", "kiln-fp16-noautotune", "kiln-fp16-nofuse", "kiln-fp16-cudnn"]
IMAGENET = {"mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]}  # as serve_http.py
SIDE = {"compile-reduce-overhead", "kiln-bf16", "kiln-fp8"}  # timed at --side-batch-sizes
BARS = {"b1_p50_ms": 0.35, "fp16_rel_err": 1e-3, "peak_img_s": 32_000, "slo_img_s": 25_000,
        "cold_start_s": 20.0}  # fmt: skip


class Skip(Exception):
    """A row that cannot run here (no CUDA, no fp8 support): a table row, not a failure."""


# ---- the competitors: each returns {batch size: fn} and the input each fn takes ----------------


def eager_fp32(model: torch.nn.Module, sizes: list[int], args: argparse.Namespace) -> dict:
    return {"fns": dict.fromkeys(sizes, _inference(model)), "prep": lambda x: x}


def eager_fp16_cl(model: torch.nn.Module, sizes: list[int], args: argparse.Namespace) -> dict:
    half = _half_cl(model, args.device)
    return {"fns": dict.fromkeys(sizes, _inference(half)), "prep": _to_half_cl}


def eager_cudagraph(model: torch.nn.Module, sizes: list[int], args: argparse.Namespace) -> dict:
    _need_cuda(args)
    half, fns, pool = _half_cl(model, args.device), {}, None
    for size in sizes:
        static_in = _to_half_cl(torch.randn(size, *args.shape, device=args.device))
        stream = torch.cuda.Stream()
        stream.wait_stream(torch.cuda.current_stream())
        with torch.no_grad(), torch.cuda.stream(stream):
            for _ in range(3):
                half(static_in)
        torch.cuda.current_stream().wait_stream(stream)
        graph = torch.cuda.CUDAGraph()
        with torch.no_grad(), torch.cuda.graph(graph, pool=pool):
            static_out = half(static_in)
        pool = graph.pool()
        fns[size] = _replay(graph, static_in, static_out)
    return {"fns": fns, "prep": _to_half_cl}


def compile_reduce_overhead(model: torch.nn.Module, sizes: list[int],
                            args: argparse.Namespace) -> dict:  # fmt: skip
    _need_cuda(args)  # on a CPU there are no CUDA graphs to reduce overhead with
    compiled = torch.compile(_half_cl(model, args.device), mode="reduce-overhead", dynamic=False)

    def run(x: torch.Tensor) -> torch.Tensor:
        torch.compiler.cudagraph_mark_step_begin()
        with torch.no_grad():
            return compiled(x)

    for size in sizes:  # compile (and record the graphs) before timing
        for _ in range(3):
            run(_to_half_cl(torch.randn(size, *args.shape, device=args.device)))
    return {"fns": dict.fromkeys(sizes, run), "prep": _to_half_cl}


def kiln_engine(precision: str, **overrides: Any) -> Callable[..., dict]:
    def build(model: torch.nn.Module, sizes: list[int], args: argparse.Namespace) -> dict:
        if precision == "fp8" and args.device.type != "cuda":
            raise Skip("needs CUDA")
        stored = stored_engine(args, sizes) if precision == "fp16" and not overrides else None
        if stored is not None:
            folder, engine = stored
            return {"fns": dict.fromkeys(sizes, engine), "prep": _to_images, "engine": engine,
                    "folder": folder}  # fmt: skip
        example = torch.randn(4, *args.shape, device=args.device)
        options = {"autotune": args.autotune if precision == "fp16" else "none",
                   "inductor": args.inductor, "jobs": args.jobs,
                   "compile": "jit" if args.compile == "jit" else None, **overrides}  # fmt: skip
        try:
            engine = deploy.optimize(model, example, precision, sizes, args.device, IMAGENET,
                                     **options)  # fmt: skip
        except (ValueError, ImportError) as e:
            if precision == "fp8":  # no fp8 on this card, or torchao missing: a skip, said why
                raise Skip(str(e).split(". ")[0]) from e
            raise
        return {"fns": dict.fromkeys(sizes, engine), "prep": _to_images,
                "engine": engine}  # fmt: skip

    return build


def stored_engine(args: argparse.Namespace,
                  sizes: list[int]) -> tuple[Path, deploy.Engine] | None:  # fmt: skip
    """The kiln-fp16 engine in ``--repository`` when it was built as this run would build it."""
    if args.repository is None or not (args.repository / args.model).is_dir():
        return None
    versions = sorted((int(p.name), p) for p in (args.repository / args.model).iterdir()
                      if p.name.isdigit() and (p / "config.json").is_file())  # fmt: skip
    if not versions:
        return None
    folder = versions[-1][1]
    config = json.loads((folder / "config.json").read_text())
    found = {"precision": config["precision"], "batch_sizes": config["batch_sizes"],
             "input": config["input"]["shape"], "autotune": config["options"]["autotune"],
             "device": config["built_for"]["device"],
             "jit": config["options"]["compile"] == "jit",
             "fuse": config["options"].get("fuse", False)}  # fmt: skip
    wanted = {"precision": "fp16", "batch_sizes": sizes, "input": [*args.shape[1:], 3],
              "autotune": args.autotune, "device": args.device.type,
              "jit": args.compile == "jit", "fuse": True}  # fmt: skip
    if found != wanted:
        print(f"{folder} was built for {found}, not {wanted}: building again", flush=True)
        return None
    print(f"loading kiln-fp16 from {folder} instead of building it", flush=True)
    return folder, deploy.load(folder, args.device)


BUILDERS: dict[str, Callable[..., dict]] = {
    "eager-fp32": eager_fp32, "eager-fp16-cl": eager_fp16_cl, "eager-cudagraph": eager_cudagraph,
    "compile-reduce-overhead": compile_reduce_overhead, "kiln-fp16": kiln_engine("fp16"),
    "kiln-bf16": kiln_engine("bf16"), "kiln-fp8": kiln_engine("fp8"),
    "kiln-fp16-nofold": kiln_engine("fp16", fold=False),
    "kiln-fp16-noautotune": kiln_engine("fp16", autotune="none"),
    "kiln-fp16-nofuse": kiln_engine("fp16", fuse=False),
    "kiln-fp16-cudnn": kiln_engine("fp16", fuse="cudnn"),
}  # fmt: skip


def _inference(module: torch.nn.Module) -> Fn:
    @torch.inference_mode()
    def run(x: torch.Tensor) -> torch.Tensor:
        return module(x)

    return run


def _replay(graph: Any, static_in: torch.Tensor, static_out: torch.Tensor) -> Fn:
    def run(x: torch.Tensor) -> torch.Tensor:
        static_in.copy_(x)
        graph.replay()
        return static_out

    return run


def _half_cl(model: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    import copy

    return copy.deepcopy(model).to(device, torch.float16).to(memory_format=torch.channels_last)


def _to_half_cl(x: torch.Tensor) -> torch.Tensor:
    return x.to(torch.float16).contiguous(memory_format=torch.channels_last)


def _to_images(x: torch.Tensor) -> torch.Tensor:
    """The uint8 NHWC images a normalized batch came from (exact for the reference inputs;
    random normal timing inputs are clamped)."""
    mean, std = (torch.tensor(IMAGENET[k], device=x.device).view(1, 3, 1, 1)
                 for k in ("mean", "std"))  # fmt: skip
    images = ((x * std + mean) * 255).round().clamp(0, 255).to(torch.uint8)
    return images.permute(0, 2, 3, 1).contiguous()


def _need_cuda(args: argparse.Namespace) -> None:
    if args.device.type != "cuda":
        raise Skip("needs CUDA")


# ---- running and timing a row -----------------------------------------------------------------


def run_row(name: str, model: torch.nn.Module, args: argparse.Namespace,
            reference: tuple[torch.Tensor, torch.Tensor]) -> dict[str, Any]:  # fmt: skip
    sizes = args.side_batch_sizes if name in SIDE else args.batch_sizes
    started = time.perf_counter()
    try:
        built = BUILDERS[name](model, sizes, args)
    except Skip as e:
        return {"status": "skipped", "reason": str(e)}
    except Exception as e:  # a failing competitor is a row of the table, not the end of the run
        traceback.print_exc()
        return {"status": "failed", "reason": f"{type(e).__name__}: {str(e)[:300]}"}
    build_s = time.perf_counter() - started
    x_ref, y_ref = reference
    with torch.no_grad():
        out = built["fns"][min(sizes)](built["prep"](x_ref[: min(sizes)]))
    _, rel = error(out.float(), y_ref[: min(sizes)])
    rows, halves = {}, {}
    for size in sizes:
        x = built["prep"](torch.randn(size, *args.shape, device=args.device))
        fn = built["fns"][size]
        calls = args.calls if size <= 8 else max(args.calls // 2, 5)
        times = time_calls(lambda fn=fn, x=x: fn(x), calls, args.device, args.warmup,
                           warmup_s=args.warmup_s)  # fmt: skip
        rows[size] = timing(size, times)
        # the p50 of the first and the last half of the calls: a warm-up still under way shows
        half = len(times) // 2
        parts = (times[:half], times[half:])
        halves[size] = [round(timing(size, part).p50_ms, 4) for part in parts]
    result = {"status": "ok", "build_s": build_s, "rel_err": rel,
              "rows": {s: vars(t) for s, t in rows.items()},
              "p50_halves_ms": halves}  # fmt: skip
    if "engine" in built:
        result["info"] = built["engine"].info
        result["source"] = "repository" if "folder" in built else "built"
        if name == "kiln-fp16":
            folder = built.get("folder") or _save(built["engine"], args)
            result["repository"] = str(folder)
            result["cold_start"] = cold_start(folder, args)
    return result


def _save(engine: deploy.Engine, args: argparse.Namespace) -> Path:
    repo = args.repository or Path(tempfile.mkdtemp(prefix="kiln-bench-repo-"))
    folder = deploy.save(engine, repo, args.model, onnx=args.onnx)
    print(f"saved kiln-fp16 in {folder}", flush=True)
    return folder


def cold_start(folder: Path, args: argparse.Namespace) -> dict[str, Any]:
    """A fresh process: import kiln, load the repository (packages + CUDA graphs), one call."""
    code = (
        "import time; t0 = time.perf_counter()\n"
        "import json, sys, torch; sys.path.insert(0, sys.argv[2])\n"
        "import kiln.deploy as d\n"
        "t1 = time.perf_counter(); e = d.load(sys.argv[1], sys.argv[3])\n"
        "x = torch.zeros(1, *e.input_shape, dtype=e.input_dtype, device=e.device); e(x)\n"
        "torch.cuda.synchronize() if e.device.type == 'cuda' else None\n"
        "t2 = time.perf_counter()\n"
        "print(json.dumps({'process_s': t2 - t0, 'load_s': t2 - t1, "
        "'compiled': e.info['compiled'], 'batch_sizes': list(e.batch_sizes)}))\n"
    )
    started = time.perf_counter()
    command = [sys.executable, "-c", code, str(folder), str(ROOT / "src"), str(args.device)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300)
    if done.returncode != 0:
        return {"status": "failed", "reason": done.stderr[-500:]}
    result = json.loads(done.stdout.strip().splitlines()[-1])
    return {"status": "ok", "wall_s": time.perf_counter() - started, **result,
            "repository": str(folder)}  # fmt: skip


# ---- report -----------------------------------------------------------------------------------


def report(results: dict[str, dict], args: argparse.Namespace) -> dict[str, Any]:
    console = Console(width=200)
    kiln_row = results.get("kiln-fp16", {})
    kiln_b1 = _b1(kiln_row)
    kiln_peak = _peak(kiln_row)
    title = f"{args.model} ({args.image_size}x{args.image_size}) inference on {args.device_name}"
    table = Table(title=f"{title} (torch {torch.__version__})")
    for column in ("row", "b=1 p50 ms", "b=1 p99 ms", "peak img/s (batch)",
                   f"best img/s, p99 <= {args.slo_ms:g} ms", "rel err", "build s",
                   "kiln-fp16 b=1 speedup", "kiln-fp16 peak ratio"):  # fmt: skip
        table.add_column(column, justify="right" if column != "row" else "left", no_wrap=True)
    for name, r in results.items():
        if r["status"] != "ok":  # the full reason is in the JSON and the log above
            table.add_row(name, f"{r['status']}: {r['reason'][:48]}", *[""] * 7)
            continue
        b1, peak, best = _b1(r), _peak(r), _best(r, args.slo_ms)
        table.add_row(
            name, _fmt(b1 and b1["p50_ms"], ".3f"), _fmt(b1 and b1["p99_ms"], ".3f"),
            f"{peak['throughput']:,.0f} ({peak['batch_size']})" if peak else "-",
            f"{best['throughput']:,.0f} ({best['batch_size']}, {best['p99_ms']:.2f} ms)"
            if best else "-", f"{r['rel_err']:.2e}", f"{r['build_s']:.0f}",
            _ratio(b1 and b1["p50_ms"], kiln_b1 and kiln_b1["p50_ms"]),
            _ratio(kiln_peak and kiln_peak["throughput"], peak and peak["throughput"]),
        )  # fmt: skip
    console.print(table)
    sizes = sorted({int(s) for r in results.values() for s in r.get("rows", {})})
    per_size = Table(title="throughput (img/s) per batch size, p99 ms in brackets")
    per_size.add_column("row", no_wrap=True)
    for size in sizes:
        per_size.add_column(f"b={size}", justify="right")
    for name, r in results.items():
        cells = [r.get("rows", {}).get(s) for s in sizes]
        per_size.add_row(name, *[f"{c['throughput']:,.0f} ({c['p99_ms']:.2f})" if c else "-"
                                 for c in cells])  # fmt: skip
    console.print(per_size)
    bars = _bars(results, args)
    for key, (value, bar, ok) in bars.items():
        console.print(f"bar {key}: {_fmt(value, '.4g')} vs {bar:g}: {'met' if ok else 'MISSED'}")
    return bars


def _bars(results: dict[str, dict], args: argparse.Namespace) -> dict[str, tuple]:
    r = results.get("kiln-fp16", {})
    if r.get("status") != "ok":
        return {}
    b1, peak, best = _b1(r), _peak(r), _best(r, args.slo_ms)
    cold = r.get("cold_start", {})
    values = {"b1_p50_ms": b1 and b1["p50_ms"], "fp16_rel_err": r["rel_err"],
              "peak_img_s": peak and peak["throughput"],
              "slo_img_s": best["throughput"] if best else 0.0,
              "cold_start_s": cold.get("process_s")}  # fmt: skip
    lower = {"b1_p50_ms", "fp16_rel_err", "cold_start_s"}
    return {k: (v, BARS[k], v is not None and (v <= BARS[k] if k in lower else v >= BARS[k]))
            for k, v in values.items()}  # fmt: skip


def _b1(r: dict) -> dict | None:
    rows = r.get("rows") or {}
    return rows[min(rows)] if rows else None


def _peak(r: dict) -> dict | None:
    rows = list((r.get("rows") or {}).values())
    return max(rows, key=lambda t: t["throughput"]) if rows else None


def _best(r: dict, slo_ms: float) -> dict | None:
    fits = [t for t in (r.get("rows") or {}).values() if t["p99_ms"] <= slo_ms]
    return max(fits, key=lambda t: t["throughput"]) if fits else None


def _ratio(num: float | None, den: float | None) -> str:
    return f"{num / den:.2f}x" if num and den else "-"


def _fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


# ---- main -------------------------------------------------------------------------------------


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--model", default="resnet50", help="a kiln.zoo model")
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--batch-sizes", default="1,8,64,128,256")
    parser.add_argument("--side-batch-sizes", help="for compile-heavy rows (default: 1,largest)")
    parser.add_argument("--only", help=f"comma-separated rows: {', '.join(ROWS + EXTRA_ROWS)}")
    parser.add_argument("--calls", type=int, default=200, help="timed calls at batch <= 8")
    parser.add_argument("--warmup", type=int, default=10)
    warm = "and at least this many seconds of calls before each timing"
    parser.add_argument("--warmup-s", type=float, default=1.0, help=warm)
    parser.add_argument("--slo-ms", type=float, default=7.0)
    parser.add_argument("--autotune", default="small", choices=["none", "small", "all"])
    parser.add_argument("--compile", default="aot", choices=["aot", "jit"],
                        help="kiln rows: AOTInductor packages (aot) or torch.compile in this "
                             "process (jit: no packages, where torch's loader fails)")  # fmt: skip
    setting = "a torch._inductor.config setting for kiln rows (repeatable)"
    parser.add_argument("--inductor", action="append", default=[], metavar="KEY=VALUE",
                        help=setting)  # fmt: skip
    parser.add_argument("--jobs", type=int, help="parallel package builds (default: cores / 4)")
    parser.add_argument("--onnx", action="store_true", help="also export model.onnx (slow)")
    parser.add_argument("--out", help="write the results as JSON here")
    reuse = "load kiln-fp16 from this model repository when built alike, else build and save it"
    parser.add_argument("--repository", type=Path, help=reuse)
    smoke = "CPU, resnet18 at 32x32, batch sizes 1,4, few calls: for CI"
    parser.add_argument("--smoke", action="store_true", help=smoke)
    args = parser.parse_args(argv)
    if args.smoke:
        args.device, args.model, args.image_size = "cpu", "resnet18", 32
        args.batch_sizes, args.calls, args.warmup, args.warmup_s = "1,4", 5, 1, 0.0
    args.only = args.only.split(",") if args.only else ROWS
    unknown = sorted(set(args.only) - set(ROWS + EXTRA_ROWS))
    if unknown:
        parser.error(f"unknown rows {unknown}; the rows are: {', '.join(ROWS + EXTRA_ROWS)}")
    args.batch_sizes = sorted({int(s) for s in args.batch_sizes.split(",")})
    side = args.side_batch_sizes or f"{min(args.batch_sizes)},{max(args.batch_sizes)}"
    args.side_batch_sizes = sorted({int(s) for s in side.split(",")})
    args.device = torch.device(args.device)
    args.inductor = dict(_setting(item, parser) for item in args.inductor)
    args.shape = (3, args.image_size, args.image_size)
    return args


def _setting(item: str, parser: argparse.ArgumentParser) -> tuple[str, Any]:
    key, sep, text = item.partition("=")
    if not sep:
        parser.error(f"--inductor takes KEY=VALUE. Received: {item!r}")
    value: Any = {"true": True, "false": False}.get(text.lower(), text)
    if isinstance(value, str) and text.lstrip("-").isdigit():
        value = int(text)
    return key, value


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    if args.device.type == "cpu":
        torch.set_num_threads(1)  # CI's cores are shared; timings are a smoke test there
    args.device_name = (torch.cuda.get_device_name(args.device) if args.device.type == "cuda"
                        else "cpu")  # fmt: skip
    torch.manual_seed(0)
    model = kiln.zoo.create_model(args.model, image_size=args.image_size).eval().to(args.device)
    images = torch.randint(0, 256, (8, *args.shape[1:], 3), dtype=torch.uint8)
    x_ref = Normalize(IMAGENET["mean"], IMAGENET["std"])(images).to(args.device)
    with strict_fp32(), torch.no_grad():
        y_ref = model(x_ref).float()
    results: dict[str, dict] = {}
    for name in args.only:
        print(f"== {name}", flush=True)
        results[name] = run_row(name, model, args, (x_ref, y_ref))
        # as it comes: a run cut short by a time limit still leaves what it measured
        print(json.dumps({name: results[name]}, default=str)[:1500], flush=True)
        if args.device.type == "cuda":
            torch.cuda.empty_cache()
    bars = report(results, args)
    if args.out:
        met = {k: {"value": v, "bar": b, "met": ok} for k, (v, b, ok) in bars.items()}
        payload = {"device": args.device_name, "torch": torch.__version__, "model": args.model,
                   "image_size": args.image_size, "slo_ms": args.slo_ms, "results": results,
                   "bars": met}  # fmt: skip
        Path(args.out).write_text(json.dumps(payload, indent=2, default=str))
    failed = "kiln-fp16" in results and results["kiln-fp16"]["status"] != "ok"
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
