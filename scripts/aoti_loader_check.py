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
import faulthandler
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# name -> (Inductor options over kiln's defaults, how to load)
VARIANTS: dict[str, tuple[dict[str, object], dict[str, object]]] = {
    # kiln's options, its compiler choice included (kiln.deploy._toolchain), and its way of
    # loading: torch's C++ loader built directly (kiln.deploy._aoti._package_loader)
    "kiln": ({"_system_cxx": True}, {"single": True, "direct": True}),
    # the same package loaded by aoti_load_package (77 s for a tiny one on the H100 image)
    "torch-loader": ({"_system_cxx": True}, {"single": True}),
    # the same with the compiler Inductor picks: crashed on the H100 image (a static libstdc++)
    "inductor-gxx": ({}, {"single": True}),
    "explicit-device-index": ({}, {"single": True, "device_index": 0}),
    "multi-threaded-runner": ({}, {"single": False}),
    "no-freezing": ({"freezing": False}, {"single": True}),
    "constants-outside-so": ({"aot_inductor.package_constants_in_so": False}, {"single": True}),
    # built against the CUDA headers and runtime that came with torch (pip's nvidia packages)
    "torch-cuda-home": ({}, {"single": True}),
    # torch's own defaults, none of kiln's options (freezing, no Inductor cudagraphs)
    "torch-defaults": ({"_plain": True}, {"single": False}),
    # built and loaded in one process, as `deploy.optimize` did before its probe
    "same-process": ({}, {"single": True, "same_process": True}),
    # the 2026-11-27 crash was in std::regex inside the wrapper (model_base.h's
    # parse_device_str): C++ built against one libstdc++ and run against another? These load
    # the compiler's libstdc++ first, or link it into the wrapper.
    "preload-libstdcxx": ({}, {"single": True, "preload_libstdcxx": True}),
    "static-libstdcxx": ({"_static_libstdcxx": True}, {"single": True}),
    # the image's g++ may be a wrapper (/opt/gcc/bin/g++ runs "g++-real" on the H100 image)
    "system-gxx": ({"_system_cxx": True}, {"single": True}),
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
    if options.pop("_plain", False):
        kiln_options = {}
    if options.pop("_static_libstdcxx", False):
        kiln_options["cpp.cxx"] = static_cxx()
    if options.pop("_system_cxx", False):
        kiln_options["cpp.cxx"] = system_cxx()
    program = torch.export.export(_net().to(dev), (x,))
    with torch.no_grad():
        torch._inductor.aoti_compile_and_package(
            program, package_path=path, inductor_configs={**kiln_options, **options}
        )


def compiler_libstdcxx() -> str | None:
    """The libstdc++ the C++ compiler Inductor uses links against."""
    cxx = os.environ.get("CXX", "g++")
    done = subprocess.run([cxx, "-print-file-name=libstdc++.so.6"], capture_output=True, text=True)
    path = done.stdout.strip()
    return os.path.realpath(path) if done.returncode == 0 and os.path.isabs(path) else None


def static_cxx() -> str:
    """A compiler script that links libstdc++ and libgcc statically into shared objects."""
    script = Path(tempfile.gettempdir()) / "cxx_static_libstdcxx"
    cxx = os.environ.get("CXX", "g++")
    script.write_text(
        f'#!/bin/sh\ncase " $* " in *" -shared "*) exec {cxx} "$@" -static-libstdc++ '
        f'-static-libgcc ;; esac\nexec {cxx} "$@"\n'
    )
    script.chmod(0o755)
    return str(script)


def system_cxx() -> str:
    """A g++ of the distribution's, not a wrapper that may add its own flags."""
    for path in ("/usr/bin/g++", "/usr/bin/g++-13", "/usr/bin/g++-12", "/usr/bin/g++-14"):
        if os.path.exists(path) and "/opt/" not in os.path.realpath(path):
            return path
    return os.environ.get("CXX", "g++")


def mapped_libstdcxx() -> list[str]:
    """The libstdc++ files this process has loaded."""
    with open("/proc/self/maps") as maps:
        return sorted({ln.split()[-1] for ln in maps if "libstdc++" in ln})


def load(device: str, how: dict[str, object], path: str) -> float:
    start = time.perf_counter()
    import torch

    print(f"# torch imported in {time.perf_counter() - start:.1f} s", flush=True)
    dev = torch.device(device)
    model = _net().to(dev)
    x = torch.randn(8, 3, 32, 32, device=dev)
    index = int(how.get("device_index", -1))  # type: ignore[call-overload]
    if os.path.exists("/proc/self/maps"):
        print(f"# libstdc++ loaded: {mapped_libstdcxx()}", flush=True)
    print(f"# loading at {time.perf_counter() - start:.1f} s", flush=True)
    # a tiny package took 77 s to load on the H100 image (2026-11-27): where does the time go?
    faulthandler.dump_traceback_later(10, repeat=True)
    if how.get("direct"):
        loader = torch._C._aoti.AOTIModelPackageLoader(path, "model", bool(how["single"]), 1, index)
        compiled = lambda x: loader.boxed_run([x])[0]  # noqa: E731
    else:
        compiled = torch._inductor.aoti_load_package(
            path, run_single_threaded=bool(how["single"]), device_index=index
        )
    faulthandler.cancel_dump_traceback_later()
    print(f"# loaded at {time.perf_counter() - start:.1f} s", flush=True)
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
    cxx = os.environ.get("CXX", "g++")
    version = subprocess.run([cxx, "--version"], capture_output=True, text=True).stdout
    print(f"# C++ compiler {shutil.which(cxx)}: {version.splitlines()[0] if version else '?'}; "
          f"its libstdc++ {compiler_libstdcxx()}; the distribution's: {system_cxx()}")  # fmt: skip
    found = shutil.which(cxx)
    if found and os.path.realpath(found).startswith("/opt/"):
        with open(os.path.realpath(found), "rb") as f:
            head = f.read(800)
        if head.startswith(b"#!"):
            print("# " + head.decode(errors="replace").replace("\n", "\n# "))


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
            names = ("cuda", "torch", "c10", "stdc++", "not found")
            keep = [ln.strip() for ln in out.splitlines() if any(k in ln for k in names)]
            if "stdc++" not in out:
                keep.append("NO libstdc++ (linked statically?)")
            print(f"# {Path(member).name} links: " + "; ".join(keep or ["(nothing CUDA)"]))


def preload_backtrace() -> str | None:
    """scripts/segv_backtrace.c built into a preload library: it prints the C++ frames of a
    crash (faulthandler prints only Python's). None where no C compiler is found."""
    import shutil

    source = Path(__file__).with_name("segv_backtrace.c")
    target = Path(tempfile.gettempdir()) / "segv_backtrace.so"
    compiler = shutil.which("gcc") or shutil.which("cc")
    if compiler is None:
        return None
    done = subprocess.run([compiler, "-shared", "-fPIC", "-o", str(target), str(source)],
                          capture_output=True, text=True)  # fmt: skip
    return str(target) if done.returncode == 0 else None


def py_spy() -> str | None:
    """py-spy, where installed (on the device: carried as a wheel into /tmp/site)."""
    import shutil

    found = shutil.which("py-spy")
    places = [Path(entry) / "bin" / "py-spy" for entry in sys.path if entry]
    places.append(Path("/tmp/site/bin/py-spy"))
    return found or next((str(p) for p in places if p.is_file()), None)


def run_sampled(
    command: list[str], env: dict[str, str], sample: bool, at: tuple[float, ...] = (15, 40, 70)
) -> tuple[subprocess.CompletedProcess[str], list[str]]:
    """Run ``command``; with ``sample``, dump its native stacks at ``at`` seconds if it still
    runs (py-spy needs ptrace; where it fails, the dump says why)."""
    spy = py_spy() if sample else None
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True, env=env)  # fmt: skip
    samples, start = [], time.perf_counter()
    for moment in at if spy else ():
        try:
            process.wait(timeout=max(0.0, moment - (time.perf_counter() - start)))
            break
        except subprocess.TimeoutExpired:
            dump = subprocess.run([spy, "dump", "--native", "--pid", str(process.pid)],
                                  capture_output=True, text=True, timeout=60)  # fmt: skip
            frames = (dump.stdout + dump.stderr).strip().splitlines()[:40]
            samples.append(f"-- at {moment:.0f} s --\n    " + "\n    ".join(frames))
    out, err = process.communicate(timeout=600)
    return subprocess.CompletedProcess(command, process.returncode, out, err), samples


def crash_report(stderr: str) -> str:
    """Python's frames and the native ones of a crashed worker, C++ names demangled."""
    import shutil

    lines = [ln for ln in stderr.splitlines() if "Warning" not in ln and ln.strip()]
    start = next((i for i, ln in enumerate(lines) if "Fatal Python error" in ln), 0)
    keep = [ln for ln in lines[start:] if not ln.startswith("Extension modules")][:70]
    text = "\n".join(keep)
    if shutil.which("c++filt"):
        text = subprocess.run(["c++filt"], input=text, capture_output=True, text=True).stdout
    return "    " + text.replace("\n", "\n    ")


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
            if how.get("same_process"):
                print(f"RESULT max abs error {load(device, how, path):.3g}", flush=True)
        else:
            print(f"RESULT max abs error {load(device, how, path):.3g}", flush=True)
        return 0
    names = args.only.split(",") if args.only else list(VARIANTS)
    print(f"# AOTInductor loader check: torch {torch.__version__}, device {args.device}")
    toolchain()
    preload = preload_backtrace()
    print(f"# native backtraces: {preload or 'none (no C compiler)'}")
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
            preloads = [preload] if preload else []
            if VARIANTS[name][1].get("preload_libstdcxx") and (lib := compiler_libstdcxx()):
                preloads.insert(0, lib)
            if preloads:
                env["LD_PRELOAD"] = " ".join(preloads)
            for what in ("build", "load"):
                start = time.perf_counter()
                command = [sys.executable, "-X", "faulthandler", __file__, "--worker", what,
                           args.device, spec, path]  # fmt: skip
                done, samples = run_sampled(command, env, sample=what == "load")
                seconds = time.perf_counter() - start
                if samples and (seconds > 30 or done.returncode):
                    print("    native stacks of the load (py-spy dump --native):\n    "
                          + "\n    ".join(samples), flush=True)  # fmt: skip
                result = [line for line in done.stdout.splitlines() if line.startswith("RESULT")]
                status = "ok" if done.returncode == 0 else f"exit {done.returncode}"
                print(f"{name:24s} {what:5s} {status:9s} {seconds:6.1f} s "
                      f"{result[0][7:] if result else ''}", flush=True)  # fmt: skip
                for line in done.stdout.splitlines():
                    if line.startswith("# "):
                        print("    " + line, flush=True)
                if what == "load" and done.returncode == 0 and "Timeout (" in done.stderr:
                    stacks = done.stderr.strip().replace("\n", "\n    ")[-6000:]
                    print(f"    where the load spent its time (a stack every 10 s):\n    {stacks}")
                if done.returncode:
                    print(crash_report(done.stderr), flush=True)
                    break
                if json.loads(spec)[1].get("same_process"):
                    break
                if what == "build":
                    linked(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
