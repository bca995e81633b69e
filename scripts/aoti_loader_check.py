"""Which AOTInductor build and load settings work on this machine? A diagnostic for the loader
crash seen with torch 2.11 + CUDA 13 on an H100 (`aoti_load_package` segfaulted inside torch's
C++ loader for a package that built fine; see BENCHMARKS.md, the deploy section).

Each variant builds a package of a tiny conv net in one process and loads and runs it in a fresh
one (faulthandler on), so a crash ends only that variant; both import torch alone, not kiln.
Prints one line per variant:

    python scripts/aoti_loader_check.py            # cuda when present, else cpu
    python scripts/aoti_loader_check.py --device cpu
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

# name -> (Inductor options over kiln's defaults, how to load)
VARIANTS: dict[str, tuple[dict[str, object], dict[str, object]]] = {
    "kiln": ({}, {"single": True}),
    "explicit-device-index": ({}, {"single": True, "device_index": 0}),
    "multi-threaded-runner": ({}, {"single": False}),
    "no-freezing": ({"freezing": False}, {"single": True}),
    "constants-outside-so": ({"aot_inductor.package_constants_in_so": False}, {"single": True}),
    # built against the CUDA headers and runtime that came with torch (pip's nvidia packages)
    "torch-cuda-home": ({}, {"single": True}),
}


def torch_cuda_home() -> str | None:
    """A folder of pip's nvidia packages with the CUDA runtime's headers, if torch has one."""
    import importlib.util

    spec = importlib.util.find_spec("nvidia")
    roots = list(spec.submodule_search_locations or []) if spec else []
    for root in map(Path, roots):
        for header in sorted(root.glob("*/include/cuda_runtime.h")):
            return str(header.parents[1])
    return None


def _net():  # type: ignore[no-untyped-def]
    import torch
    from torch import nn

    torch.manual_seed(0)
    layers = [nn.Conv2d(3, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(),
              nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 10)]  # fmt: skip
    return nn.Sequential(*layers).eval()


def build(device: str, options: dict[str, object], path: str) -> None:
    """torch alone, no kiln import (kiln.deploy imports much more: FastAPI, pydantic, ...), with
    the Inductor options kiln.deploy._aoti.inductor_options gives a batch without autotuning."""
    import torch

    dev = torch.device(device)
    x = torch.randn(8, 3, 32, 32, device=dev)
    kiln_options: dict[str, object] = {"freezing": True}
    if dev.type == "cuda":
        kiln_options["triton.cudagraphs"] = False
    program = torch.export.export(_net().to(dev), (x,))
    with torch.no_grad():
        torch._inductor.aoti_compile_and_package(
            program, package_path=path, inductor_configs={**kiln_options, **options}
        )


def load(device: str, how: dict[str, object], path: str) -> float:
    import torch

    dev = torch.device(device)
    model = _net().to(dev)
    x = torch.randn(8, 3, 32, 32, device=dev)
    index = int(how.get("device_index", -1))  # type: ignore[call-overload]
    compiled = torch._inductor.aoti_load_package(
        path, run_single_threaded=bool(how["single"]), device_index=index
    )
    with torch.no_grad():
        return float((compiled(x) - model(x)).abs().max())


def toolchain() -> None:
    """The CUDA torch runs on against the toolkit the packages' C++ is built with: a wrapper
    linked against another CUDA runtime than torch's is one way a loader can crash."""
    import shutil

    import torch

    home = os.environ.get("CUDA_HOME") or "(unset: torch looks for nvcc)"
    nvcc = shutil.which("nvcc") or os.path.join(os.environ.get("CUDA_HOME", ""), "bin", "nvcc")
    release = ""
    if os.path.exists(nvcc):
        out = subprocess.run([nvcc, "--version"], capture_output=True, text=True).stdout
        release = next((ln for ln in out.splitlines() if "release" in ln), "").strip()
    print(f"# torch.version.cuda {torch.version.cuda}; CUDA_HOME {home}; nvcc {nvcc}: {release}")


def linked(package: str) -> None:
    """The CUDA and torch libraries the package's wrapper library links against (ldd)."""
    import shutil
    import zipfile

    with tempfile.TemporaryDirectory() as tmp, zipfile.ZipFile(package) as archive:
        for member in (m for m in archive.namelist() if m.endswith(".so")):
            so = archive.extract(member, tmp)
            if not shutil.which("ldd"):
                return
            out = subprocess.run(["ldd", so], capture_output=True, text=True).stdout
            keep = [ln.strip() for ln in out.splitlines()
                    if any(k in ln for k in ("cuda", "torch", "c10", "not found"))]  # fmt: skip
            print(f"# {Path(member).name} links: " + "; ".join(keep or ["(nothing CUDA)"]))


def main() -> int:
    import torch

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--only", help="comma-separated: " + ", ".join(VARIANTS))
    parser.add_argument("--worker", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        what, device, spec, path = args.worker
        options, how = json.loads(spec)
        if what == "build":
            build(device, options, path)
        else:
            print(f"RESULT max abs error {load(device, how, path):.3g}", flush=True)
        return 0
    names = args.only.split(",") if args.only else list(VARIANTS)
    print(f"# AOTInductor loader check: torch {torch.__version__}, device {args.device}")
    toolchain()
    with tempfile.TemporaryDirectory() as tmp:
        for name in names:
            spec, path = json.dumps(VARIANTS[name]), str(Path(tmp) / f"{name}.pt2")
            env = dict(os.environ)
            if name == "torch-cuda-home":
                home = torch_cuda_home()
                if home is None:
                    print(f"{name:24s} skipped: no nvidia package with cuda_runtime.h", flush=True)
                    continue
                env["CUDA_HOME"] = home
                print(f"# {name}: CUDA_HOME={home}", flush=True)
            for what in ("build", "load"):
                start = time.perf_counter()
                done = subprocess.run(
                    [sys.executable, "-X", "faulthandler", __file__, "--worker", what,
                     args.device, spec, path],
                    capture_output=True, text=True, timeout=600, env=env,
                )  # fmt: skip
                seconds = time.perf_counter() - start
                result = [line for line in done.stdout.splitlines() if line.startswith("RESULT")]
                status = "ok" if done.returncode == 0 else f"exit {done.returncode}"
                print(f"{name:24s} {what:5s} {status:9s} {seconds:6.1f} s "
                      f"{result[0][7:] if result else ''}", flush=True)  # fmt: skip
                if done.returncode:
                    tail = [ln for ln in done.stderr.splitlines() if "Warning" not in ln][-8:]
                    print("    " + "\n    ".join(tail), flush=True)
                    break
                if what == "build" and name == names[0]:
                    linked(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
