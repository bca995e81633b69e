"""``kiln deploy`` (optimize a saved model into a repository) and ``kiln bench`` (time it)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

COMMANDS = ("deploy", "bench")


def add_parsers(subparsers: Any) -> None:
    deploy = subparsers.add_parser(
        "deploy", help="optimize a saved model (MODEL.kiln) into a model repository"
    )
    deploy.add_argument("model", help="a model saved with model.save (MODEL.kiln)")
    deploy.add_argument("repository", help="the repository folder (created if missing)")
    deploy.add_argument("--name", help="the model's name in the repository (default: file stem)")
    deploy.add_argument("--version", type=int, help="version number (default: the next one)")
    deploy.add_argument("--precision", default="fp16", choices=["fp32", "bf16", "fp16", "fp8"])
    deploy.add_argument("--batch-sizes", default="1,8,64,256", help="comma-separated sizes")
    deploy.add_argument("--device", help="cpu, cuda, cuda:1 ... (default: cuda when available)")
    deploy.add_argument("--image-mean", help="take uint8 NHWC images: per-channel mean, 0..1")
    deploy.add_argument("--image-std", help="take uint8 NHWC images: per-channel std, 0..1")
    deploy.add_argument("--autotune", default="small", choices=["none", "small", "all"])
    deploy.add_argument("--no-compile", action="store_true", help="no AOTInductor packages")
    deploy.add_argument(
        "--no-fuse",
        action="store_true",
        help="no fused convolutions: neither cuDNN's conv + ReLU calls nor, at batch 1, kiln's "
        "Triton kernels (GPU, fp16/bf16/fp8)",
    )
    deploy.add_argument(
        "--no-triton",
        action="store_true",
        help="batch 1 keeps cuDNN's fused calls too: no Triton convolutions or space-to-depth "
        "stem, and no kernel timing in the build",
    )
    deploy.add_argument("--no-onnx", action="store_true", help="do not write model.onnx")
    bench = subparsers.add_parser("bench", help="latency and throughput of a model repository")
    bench.add_argument("repository", help="a model repository (or one model's folder)")
    bench.add_argument("--model", help="only this model (default: every model)")
    bench.add_argument("--slo-ms", type=float, default=7.0, help="p99 latency budget (ms)")
    bench.add_argument("--device", help="cpu, cuda ... (default: the one it was built for)")
    bench.add_argument("--calls", type=int, default=200, help="timed calls per batch size")
    bench.add_argument("--warmup-s", type=float, default=1.0,
                       help="seconds of untimed calls before each batch size's timing")  # fmt: skip
    bench.add_argument("--plot", help="PNG path (default: bench.png, if matplotlib is there)")
    bench.add_argument("--json", help="also write the results to this JSON file")


def run(args: argparse.Namespace) -> int:
    return _deploy(args) if args.command == "deploy" else _bench(args)


def _deploy(args: argparse.Namespace) -> int:
    import torch

    from kiln import deploy
    from kiln.model import load_model

    model = load_model(args.model, compile=False)
    specs = getattr(model, "input_specs", None)
    if not specs or len(specs) != 1 or None in specs[0].shape:
        raise SystemExit(f"kiln deploy: {args.model} must be a model with one input of known "
                         f"shape. Received: inputs {specs!r}.")  # fmt: skip
    dtype = getattr(torch, specs[0].dtype)
    shape = (4, *specs[0].shape)  # random samples drive the checks of every pass
    example = (
        torch.randn(shape).to(dtype) if dtype.is_floating_point else torch.zeros(shape, dtype=dtype)
    )
    image = None
    if args.image_mean or args.image_std:
        image = {k: [float(v) for v in s.split(",")]
                 for k, s in (("mean", args.image_mean), ("std", args.image_std)) if s}  # fmt: skip
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    engine = deploy.optimize(
        model, example, args.precision, _sizes(args.batch_sizes), device, image,
        compile=False if args.no_compile else None, autotune=args.autotune,
        fuse=False if args.no_fuse else "cudnn" if args.no_triton else True,
    )  # fmt: skip
    name = args.name or Path(args.model).stem
    folder = deploy.save(engine, args.repository, name, args.version, onnx=not args.no_onnx)
    info = engine.info
    print(f"kiln deploy: {folder} ({info['precision']} on {info['device']}, batch sizes "
          f"{list(engine.batch_sizes)}, relative error {info['rel_error']:.2g}, "
          f"built in {info['build_s']:.0f} s)")  # fmt: skip
    for entry in info.get("skipped", []):
        print(f"kiln deploy: pass {entry['name']} skipped: {entry['reason']}")
    return 0


def _sizes(text: str) -> list[int]:
    try:
        return [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        raise SystemExit(
            f"kiln deploy: --batch-sizes takes comma-separated integers. Received: {text!r}."
        ) from None


def _bench(args: argparse.Namespace) -> int:
    import json
    from importlib.util import find_spec

    from kiln import deploy

    engines = _engines(args.repository, args.model, args.device)
    results = [deploy.benchmark(e, calls=args.calls, slo_ms=args.slo_ms,
                                warmup_s=args.warmup_s) for e in engines]  # fmt: skip
    print_table(results)
    plot_path = args.plot or ("bench.png" if find_spec("matplotlib") else None)
    if plot_path:
        deploy.plot(results, plot_path)
        print(f"plot: {plot_path}")
    else:
        print("(no plot: pip install 'kiln[plot]' for one)")
    if args.json:
        Path(args.json).write_text(json.dumps([r.as_dict() for r in results], indent=2))
    return 0


def _engines(repository: str, model: str | None, device: str | None) -> list[Any]:
    from kiln import deploy

    root = Path(repository)
    if model is not None:
        return [deploy.load(root / model, device)]
    if (root / "config.json").is_file() or any(p.name.isdigit() for p in root.glob("*")):
        return [deploy.load(root, device)]
    engines = list(deploy.load_repository(root, device).values())
    if not engines:
        raise SystemExit(f"kiln bench: no models in {repository!r} (kiln deploy writes them).")
    return engines


def print_table(results: list[Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    for result in results:
        best = result.best
        precision = result.info.get("precision")
        title = f"{result.name} on {result.device} ({precision}), SLO p99 <= {result.slo_ms:g} ms"
        table = Table(title=title)
        for column in ("batch", "p50 ms", "p99 ms", "samples/s", ""):
            table.add_column(column, justify="right")
        for r in result.rows:
            mark = "best under SLO" if best is not None and r == best else ""
            table.add_row(str(r.batch_size), f"{r.p50_ms:.3f}", f"{r.p99_ms:.3f}",
                          f"{r.throughput:,.0f}", mark)  # fmt: skip
        Console().print(table)
        b1, peak = result.latency, result.peak
        best_text = (f"{best.throughput:,.0f}/s at batch {best.batch_size} (p99 {best.p99_ms:.2f} "
                     f"ms)" if best else "none")  # fmt: skip
        print(
            f"batch-{b1.batch_size} latency p50 {b1.p50_ms:.3f} ms, p99 {b1.p99_ms:.3f} ms; peak "
            f"{peak.throughput:,.0f}/s at batch {peak.batch_size}; best under the SLO: {best_text}"
        )
