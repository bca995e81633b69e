"""Where does an AOTInductor package fault inside kiln's engine on a GPU?

On 2026-11-28 (1x H100, torch 2.11.0+cu130) ``kiln.deploy.optimize`` built ResNet-50's fp16
packages, the probe process loaded and ran them, and then the first in-process check of a
runner (package + CUDA graph) died with "an illegal memory access". This script builds the same
engine without CUDA graphs (``cuda_graphs=False``), then for each package runs, synchronizing
after every step: the package alone, the package captured in a CUDA graph as kiln does, and the
replay, each compared with the original model. Run one variant per process (a fault poisons the
CUDA context):

    python scripts/aoti_graph_check.py --precision fp16 --jobs 2 --sizes 1,8
    python scripts/aoti_graph_check.py --precision fp16 --jobs 1 --sizes 1  # in-process build

That found no fault (four variants), nor did ``--variants``, which builds once and replays
kiln's runner loop over the packages in one child process per variant (``kiln``: as
``_runners`` does; ``nobench``: without cuDNN autotuning; ``sync``: synchronizing after warm-up,
capture and replay; ``nopool``: a pool per graph). ``--graphs`` (kiln's own runners, with
``CUDA_LAUNCH_BLOCKING=1``) put the fault in the first replay: ``_runners`` kept only the graph
runner, the package's runner was collected and its weights freed under the captured kernels.
The graph runner now holds the function it captured; ``--graphs`` is the regression check::

    python scripts/aoti_graph_check.py --sizes 1,8,64,256 --jobs 4 --graphs
    python scripts/aoti_graph_check.py --sizes 1,8,64,256 --jobs 4 \\
        --variants kiln,nobench,sync,nopool
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

import torch

from kiln import deploy
from kiln.deploy._aoti import load_package
from kiln.deploy._check import error, strict_fp32
from kiln.deploy._cuda_graph import GraphRunner
from kiln.zoo import create_model

IMAGENET = {"mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]}


def say(*parts: object) -> None:
    print(f"[{time.strftime('%H:%M:%S')}]", *parts, flush=True)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="resnet50")
    parser.add_argument("--precision", default="fp16")
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--sizes", default="1,8")
    parser.add_argument("--no-image", action="store_true", help="float NCHW input, no image=")
    parser.add_argument("--device", default="cuda", help="cpu: a smoke test of this script")
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--graphs", action="store_true", help="optimize with its CUDA graphs")
    parser.add_argument("--variants", default="", help="comma-separated child variants")
    parser.add_argument("--child", default="", help="(internal) VARIANT:SIZE=PATH,...")
    args = parser.parse_args()
    if args.child:
        return child(args.child, args.image_size)
    sizes = [int(s) for s in args.sizes.split(",")]
    device, size_px = torch.device(args.device), args.image_size
    model = create_model(args.model, image_size=size_px).eval()
    example = torch.randn(4, 3, size_px, size_px)
    engine = deploy.optimize(model, example, args.precision, sizes, device,
                             None if args.no_image else IMAGENET, compile=True, autotune="none",
                             cuda_graphs=args.graphs, jobs=args.jobs, verbose=True)  # fmt: skip
    sync = torch.cuda.synchronize if device.type == "cuda" else lambda: None
    sync()
    say("engine without CUDA graphs: rel err", engine.info["rel_error"])
    source = engine.source
    if args.variants:
        packages = ",".join(f"{size}={path}" for size, path in source.packages.items())
        for variant in args.variants.split(","):
            say(f"== variant {variant}")
            done = subprocess.run([sys.executable, __file__, "--image-size", str(size_px),
                                   "--child", f"{variant}:{packages}"], timeout=240)  # fmt: skip
            say(f"== variant {variant}: exit code {done.returncode}")
        return 0
    x, reference = source.inputs.to(device), source.reference.to(device)
    for size, path in source.packages.items():
        rows = min(size, len(x))
        batch = x[:1].expand(size, *x.shape[1:]).contiguous() if size > len(x) else x[:size]
        ref = reference[:1] if size > len(x) else reference[:size]
        say(f"batch {size}: input {tuple(batch.shape)} {batch.dtype} stride {batch.stride()}")
        run = load_package(path, device)
        out = run(batch)
        sync()
        say(f"batch {size}: package alone ok, rel err {error(out[:rows].float(), ref)[1]:.3g}")
        if device.type != "cuda":
            continue
        graphed = GraphRunner(run, batch)
        torch.cuda.synchronize()
        say(f"batch {size}: captured")
        out = graphed(batch)
        torch.cuda.synchronize()
        say(f"batch {size}: replay ok, rel err {error(out[:rows].float(), ref)[1]:.3g}")
    say("all ok")
    return 0


def child(spec: str, size_px: int) -> int:
    """kiln's runner loop (``_runners``) over the packages in ``spec``, as one variant."""
    variant, _, listed = spec.partition(":")
    packages = {int(k): Path(v) for k, v in (item.split("=") for item in listed.split(","))}
    device = torch.device("cuda")
    generator = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (max(packages), size_px, size_px, 3), generator=generator,
                           dtype=torch.uint8).to(device)  # fmt: skip
    sync = variant == "sync"
    context = strict_fp32() if variant == "nobench" else strict_fp32(benchmark=True)
    pool = None
    with context, torch.no_grad():
        for size, path in packages.items():
            batch = images[:size]
            run = load_package(path, device)
            graphed = GraphRunner(run, batch, None if variant == "nopool" else pool)
            if sync:
                torch.cuda.synchronize()
                say(f"{variant} batch {size}: warmed up and captured")
            pool = graphed.pool
            out = graphed(batch).clone()
            if sync:
                torch.cuda.synchronize()
                say(f"{variant} batch {size}: replayed")
            plain = run(batch)
            _, rel = error(out.float(), plain.float())
            say(f"{variant} batch {size}: replay vs plain run rel err {rel:.3g}")
    torch.cuda.synchronize()
    say(f"{variant}: all ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
