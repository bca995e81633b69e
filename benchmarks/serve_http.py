"""HTTP inference throughput and latency of `kiln serve`: uint8 images, binary bodies.

It serves a model (a repository through `kiln serve`, a running server with --url, or, by
default, an in-process server over ResNet-50 built with kiln.deploy.optimize when that exists,
else an eager fp16 engine), then drives it from several client processes, each holding
keep-alive connections that send k images per request back to back (closed loop), for a fixed
time per concurrency level. It prints img/s, requests/s, latency p50/p99 per level, the
server's mean batch size, and whether p99 meets the SLO.

    python benchmarks/serve_http.py                                # ResNet-50 on cuda
    python benchmarks/serve_http.py --repository models/           # `kiln serve models/`
    python benchmarks/serve_http.py --url http://127.0.0.1:8000 --model resnet50
    python benchmarks/serve_http.py --smoke                        # a tiny CPU run (CI)
    python benchmarks/serve_http.py --engine echo --concurrency 1,2,4,8,16,32  # server alone

A repository written by ``benchmarks/inference.py --repository DIR`` serves as it is: its
kiln-fp16 engine is named after the zoo model and takes uint8 NHWC images (ImageNet
normalization inside), as this client sends them:

    python benchmarks/inference.py --only kiln-fp16 --repository /tmp/repo
    python benchmarks/serve_http.py --repository /tmp/repo --model resnet50

Each level prints a JSON line on stdout as soon as it is measured (and rewrites --json).

Top-level imports are the standard library only: client processes start fast.
"""

from __future__ import annotations

import argparse
import asyncio
import inspect
import json
import multiprocessing as mp
import os
import re
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

IMAGENET = {"mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]}
LENGTH = re.compile(rb"content-length:\s*(\d+)", re.I)


# ---- the client (one process: an asyncio loop with several keep-alive connections) ---------


async def _connection(
    host: str,
    port: int,
    request: bytes,
    window: tuple[float, float],
    latencies: list[float],
    statuses: Counter,
) -> None:
    reader, writer = await asyncio.open_connection(host, port)
    warm_until, stop_at = window
    try:
        while time.time() < stop_at:
            start = time.perf_counter()
            writer.write(request)
            await writer.drain()
            head = await reader.readuntil(b"\r\n\r\n")
            match = LENGTH.search(head)
            await reader.readexactly(int(match.group(1)) if match else 0)
            now = time.time()
            if warm_until <= now <= stop_at:
                latencies.append(time.perf_counter() - start)
                statuses[int(head[9:12])] += 1
    finally:
        writer.close()


async def _client(
    url: str, request: bytes, connections: int, window: tuple[float, float]
) -> tuple[list[float], Counter]:
    host, port = url.removeprefix("http://").rsplit(":", 1)
    latencies: list[float] = []
    statuses: Counter = Counter()
    await asyncio.gather(
        *(
            _connection(host, int(port), request, window, latencies, statuses)
            for _ in range(connections)
        )
    )
    return latencies, statuses


def _client_process(
    url: str, request: bytes, connections: int, window: tuple[float, float], out: Any
) -> None:
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    try:
        out.put(asyncio.run(_client(url, request, connections, window)))
    except Exception as error:  # reported by the parent
        out.put(error)


def run_level(
    url: str,
    model: str,
    images: int,
    shape: list[int],
    clients: int,
    processes: int,
    warmup: float,
    duration: float,
) -> dict[str, Any]:
    """``clients`` connections over ``processes`` processes for ``warmup`` + ``duration`` s."""
    body = os.urandom(images * _prod(shape))
    head = (
        f"POST /v1/models/{model}/infer HTTP/1.1\r\nHost: bench\r\n"
        f"Content-Type: application/octet-stream\r\nAccept: application/octet-stream\r\n"
        f"X-Shape: {','.join(map(str, [images, *shape]))}\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    request = head.encode() + body
    processes = max(1, min(processes, clients))
    spread = [clients // processes + (i < clients % processes) for i in range(processes)]
    context = mp.get_context("spawn")
    out = context.Queue()
    start = time.time() + 0.5 + 0.25 * processes  # every process connected before the window
    window = (start + warmup, start + warmup + duration)
    procs = [
        context.Process(target=_client_process, args=(url, request, n, window, out)) for n in spread
    ]
    for proc in procs:
        proc.start()
    results = [out.get(timeout=warmup + duration + 120) for _ in procs]
    for proc in procs:
        proc.join()
    for result in results:
        if isinstance(result, Exception):
            raise RuntimeError(f"a client process failed: {result!r}")
    latencies = sorted(x for lat, _ in results for x in lat)
    statuses = sum((s for _, s in results), Counter())
    ok = statuses.get(200, 0)
    return {
        "clients": clients,
        "images_per_request": images,
        "requests": len(latencies),
        "img_s": ok * images / duration,
        "req_s": len(latencies) / duration,
        "p50_ms": _quantile(latencies, 0.50) * 1000,
        "p99_ms": _quantile(latencies, 0.99) * 1000,
        "errors": {str(k): v for k, v in statuses.items() if k != 200},
    }


def _quantile(values: list[float], q: float) -> float:
    return values[min(len(values) - 1, int(q * len(values)))] if values else float("nan")


def _prod(shape: list[int]) -> int:
    out = 1
    for d in shape:
        out *= d
    return out


# ---- the server ------------------------------------------------------------------------------


def build_engine(args: argparse.Namespace) -> Any:
    """ResNet-50 (or a tiny CNN for --smoke) taking uint8 NHWC images."""
    import torch

    from kiln import deploy

    if args.device.startswith("cuda") and not torch.cuda.is_available():
        raise SystemExit(
            "serve_http.py: --device is cuda (the default), and this machine has no CUDA GPU "
            "that torch can use. Pass --device cpu (or --smoke)."
        )
    size = args.image_size
    sizes = [int(s) for s in args.batch_sizes.split(",")]
    if args.engine == "echo":
        print("building the engine: echo (first 1000 bytes of each image)", file=sys.stderr)
        images = torch.zeros(1, size, size, 3, dtype=torch.uint8, device=args.device)
        return deploy.eager_engine(echo_model(), images, sizes)
    if args.smoke:
        torch.set_num_threads(1)  # the client processes need the other cores
        model = torch.nn.Sequential(
            torch.nn.Conv2d(3, 8, 3, stride=2),
            torch.nn.ReLU(),
            torch.nn.AdaptiveAvgPool2d(1),
            torch.nn.Flatten(),
            torch.nn.Linear(8, 10),
        )
    else:
        from kiln import zoo

        model = zoo.create_model(args.model, image_size=size)
    if hasattr(deploy, "optimize") and args.engine == "optimize":
        options = {"precision": args.precision, "batch_sizes": sizes, "device": args.device,
                   "image": IMAGENET, "autotune": args.autotune}  # fmt: skip
        known = inspect.signature(deploy.optimize).parameters  # its options may still change
        options = {k: v for k, v in options.items() if k in known and v is not None}
        print(f"building the engine: kiln.deploy.optimize({options})", file=sys.stderr)
        return deploy.optimize(model, torch.randn(8, 3, size, size), **options)
    print(f"building the engine: eager {args.precision} (no kiln.deploy.optimize)", file=sys.stderr)
    dtype = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[
        args.precision if args.device != "cpu" else "fp32"
    ]
    device = torch.device(args.device)
    wrapped = image_model(model, dtype).to(device, memory_format=torch.channels_last)
    images = torch.zeros(1, size, size, 3, dtype=torch.uint8, device=device)
    return deploy.eager_engine(wrapped, images, sizes)


def echo_model() -> Any:
    """A model that costs next to nothing: ``--engine echo`` measures the server alone."""
    import torch

    class Echo(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x.flatten(1)[:, :1000].float()  # as many outputs as ImageNet logits

    return Echo()


def image_model(model: Any, dtype: Any) -> Any:
    """uint8 NHWC -> normalized NCHW (the permute gives channels_last strides) -> ``model``."""
    import torch

    class Images(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model.to(dtype)
            self.register_buffer("mean", torch.tensor(IMAGENET["mean"]).view(1, 3, 1, 1) * 255)
            self.register_buffer("std", torch.tensor(IMAGENET["std"]).view(1, 3, 1, 1) * 255)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            x = (x.permute(0, 3, 1, 2).float() - self.mean) / self.std
            return self.model(x.to(dtype)).float()

    return Images()


@contextmanager
def in_process_server(args: argparse.Namespace) -> Any:
    from kiln.deploy import inference_app
    from kiln.deploy._serve import serving

    engine = build_engine(args)
    app = inference_app(
        {args.model: engine},
        max_delay_ms=args.max_delay_ms,
        max_queue=args.max_queue,
        preferred_sizes=args.preferred_sizes,
    )
    with serving(app, port=args.port) as url:
        yield url


@contextmanager
def kiln_serve(args: argparse.Namespace) -> Any:
    command = [
        sys.executable,
        "-m",
        "kiln.cli",
        "serve",
        str(args.repository),
        "--port",
        str(args.port or 8000),
        "--max-delay-ms",
        str(args.max_delay_ms),
        *([] if args.preferred_sizes else ["--no-preferred-sizes"]),
        "--max-queue",
        str(args.max_queue),
    ]
    if args.device:
        command += ["--device", args.device]
    proc = subprocess.Popen(command)
    try:
        yield f"http://127.0.0.1:{args.port or 8000}"
    finally:
        proc.terminate()
        proc.wait(timeout=60)


def wait_ready(url: str, timeout: float) -> list[dict[str, Any]]:
    deadline = time.time() + timeout
    while True:
        try:
            with urllib.request.urlopen(f"{url}/health/ready", timeout=5) as reply:
                if reply.status == 200:
                    break
        except OSError:
            pass
        if time.time() > deadline:
            raise SystemExit(f"{url} was not ready after {timeout:.0f} s")
        time.sleep(0.5)
    with urllib.request.urlopen(f"{url}/v1/models", timeout=10) as reply:
        return json.load(reply)["models"]


def batch_stats(url: str, model: str) -> tuple[float, float, float]:
    """(engine calls, samples, engine seconds) so far, from /metrics."""
    with urllib.request.urlopen(f"{url}/metrics", timeout=10) as reply:
        text = reply.read().decode()

    def value(name: str) -> float:
        match = re.search(rf'^{name}{{model="{re.escape(model)}"}} (\S+)$', text, re.M)
        return float(match.group(1)) if match else 0.0

    return (
        value("kiln_serve_batch_size_count"),
        value("kiln_serve_batch_size_sum"),
        value("kiln_serve_engine_seconds_sum"),
    )


# ---- main ------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--repository", type=Path, help="serve this repository with kiln serve")
    parser.add_argument("--url", help="benchmark a running server instead")
    parser.add_argument("--model", default="resnet50", help="zoo model / served name")
    parser.add_argument(
        "--engine",
        choices=["optimize", "eager", "echo"],
        default="optimize",
        help="in-process engine: kiln.deploy.optimize when present, eager, or echo (next to no "
        "work: the server's own ceiling)",
    )
    parser.add_argument("--precision", default="fp16", help="fp16, bf16 or fp32")
    parser.add_argument("--autotune", help="optimize's autotune: small, all or none")
    parser.add_argument("--batch-sizes", default="1,8,16,32,64", help="the engine's sizes")
    parser.add_argument("--device", default="cuda", help="cuda or cpu")
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--images", type=int, default=8, help="images per request (k)")
    parser.add_argument("--concurrency", default="1,4,8,16,32,64", help="clients per level")
    parser.add_argument("--processes", type=int, default=8, help="client processes (at most)")
    parser.add_argument("--warmup", type=float, default=2.0, help="seconds before measuring")
    parser.add_argument("--duration", type=float, default=10.0, help="measured seconds")
    parser.add_argument("--slo-ms", type=float, default=7.0, help="p99 latency target")
    parser.add_argument("--max-delay-ms", type=float, default=1.0)
    parser.add_argument(
        "--no-preferred-sizes",
        dest="preferred_sizes",
        action="store_false",
        help="the server waits out the delay even at one of the engine's batch sizes",
    )
    parser.add_argument("--max-queue", type=int, default=1024)
    parser.add_argument("--port", type=int, default=0, help="server port (0: a free one)")
    parser.add_argument("--ready-timeout", type=float, default=900.0)
    parser.add_argument("--json", type=Path, help="also write the results to this file")
    parser.add_argument(
        "--smoke", action="store_true", help="a tiny CPU run: small CNN, 32x32 images, short levels"
    )
    args = parser.parse_args(argv)
    if args.smoke:  # new defaults; options given still win
        parser.set_defaults(device="cpu", engine="eager", model="tiny", image_size=32,
                            batch_sizes="1,4,8", images=2, concurrency="1,4", processes=2,
                            warmup=0.3, duration=1.0)  # fmt: skip
        args = parser.parse_args(argv)
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    with ExitStack() as stack:
        if args.url:
            url = args.url.rstrip("/")
        elif args.repository:
            url = stack.enter_context(kiln_serve(args))
        else:
            url = stack.enter_context(in_process_server(args))
        models = wait_ready(url, args.ready_timeout)
        model = next((m for m in models if m["name"] == args.model), models[0])
        shape = model["input"]["shape"]
        print(
            f"kiln serve at {url}: model {model['name']!r}, input {shape} "
            f"{model['input']['dtype']}, batch sizes {model['batch_sizes']}, on "
            f"{model['device']}; {args.images} images per request, binary",
            flush=True,
        )
        rows: list[dict[str, Any]] = []
        best = 0.0
        for clients in [int(c) for c in args.concurrency.split(",")]:
            before = batch_stats(url, model["name"])
            row = run_level(
                url,
                model["name"],
                args.images,
                shape,
                clients,
                args.processes,
                args.warmup,
                args.duration,
            )
            after = batch_stats(url, model["name"])
            calls = max(after[0] - before[0], 1.0)
            row["mean_batch"] = (after[1] - before[1]) / calls
            row["engine_ms"] = (after[2] - before[2]) / calls * 1000
            row["meets_slo"] = row["p99_ms"] <= args.slo_ms
            rows.append(row)
            # as it comes: a run cut short by a time limit still leaves what it measured
            print(json.dumps({"level": row}), flush=True)
            best = write_results(args, model, rows)
    print(table(rows, args.slo_ms))
    print(f"\nbest throughput with p99 <= {args.slo_ms:g} ms: {best:,.0f} img/s")
    return 0 if all(not r["errors"] for r in rows) else 1


def write_results(args: argparse.Namespace, model: dict[str, Any], rows: list[dict]) -> float:
    """The best img/s within the SLO so far; the results so far into --json."""
    within = [r["img_s"] for r in rows if r["meets_slo"] and not r["errors"]]
    best = max(within, default=0.0)
    if args.json:
        results = {"model": model, "rows": rows, "best_img_s": best, "slo_ms": args.slo_ms}
        args.json.write_text(json.dumps(results, indent=2))
    return best


def table(rows: list[dict[str, Any]], slo_ms: float) -> str:
    lines = [
        f"| clients | img/s | req/s | p50 ms | p99 ms | p99 <= {slo_ms:g} ms | mean batch "
        "| engine ms | errors |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        errors = ", ".join(f"{k}: {v}" for k, v in r["errors"].items()) or "0"
        lines.append(
            f"| {r['clients']} | {r['img_s']:,.0f} | {r['req_s']:,.0f} | {r['p50_ms']:.2f} | "
            f"{r['p99_ms']:.2f} | {'yes' if r['meets_slo'] else 'no'} | {r['mean_batch']:.1f} | "
            f"{r['engine_ms']:.2f} | {errors} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
