"""AOTInductor: one ahead-of-time compiled package per fixed batch size.

A package is a ``.pt2`` file with the compiled kernels and the (frozen) weights for one device
kind; loading it takes seconds, so a server cold-starts without compiling. Inductor freezing
turns the weights into constants (constant folding, conv + BatchNorm folding, layout
optimization: channels_last for convolutions); max-autotune benchmarks kernel candidates (Triton
templates with fused epilogues, cuBLAS/cuDNN) per shape, where small batches gain the most.
Loading runs torch's C++ loader, which can crash the process outright, so ``optimize`` loads
new packages in a probe process first (``kiln.deploy._aoti_probe``). The one crash we have
seen came from the C++ compiler, not the loader: see ``kiln.deploy._toolchain``.
"""

from __future__ import annotations

import re
import zipfile
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import torch
from torch import nn

from kiln.deploy._cuda_graph import Runner
from kiln.deploy._inductor_fixes import inductor_fixes
from kiln.deploy._toolchain import package_compiler

# autotune="small" autotunes batch sizes up to this: batch 1 only, the latency that max-autotune
# helps most. Each autotuned build takes minutes of GPU timing and they run one at a time, so
# every size added here lengthens the whole build by about one such build.
SMALL_BATCH = 1


def inductor_options(device: torch.device, batch_size: int, autotune: str,
                     overrides: dict[str, Any] | None = None) -> dict[str, Any]:  # fmt: skip
    """The Inductor configuration for one package; ``autotune`` is "none", "small" or "all";
    ``overrides`` (``torch._inductor.config`` names) win. Where Inductor's C++ compiler links
    libstdc++ into shared objects, another compiler builds the wrapper (``_toolchain``)."""
    options: dict[str, Any] = {"freezing": True}
    if (compiler := package_compiler()) is not None:
        options["cpp.cxx"] = compiler
    if device.type == "cuda":
        options["triton.cudagraphs"] = False  # kiln captures the whole call itself
        if autotune == "all" or (autotune == "small" and batch_size <= SMALL_BATCH):
            options.update({
                "max_autotune": True,
                "max_autotune_gemm_backends": "ATEN,TRITON",
                # Triton conv templates: "no gains on H100" (Inductor's own note), long builds
                "max_autotune_conv_backends": "ATEN",
                "conv_1x1_as_mm": True,  # 1x1 convolutions as GEMMs with fused epilogues
            })  # fmt: skip
    return {**options, **(overrides or {})}


def build_package(
    module: nn.Module, example: torch.Tensor, path: Path, options: dict[str, Any]
) -> Path:
    """Compile ``module`` for inputs shaped like ``example`` (a static shape) into ``path``."""
    program = torch.export.export(module, (example,))
    path.parent.mkdir(parents=True, exist_ok=True)
    with torch.no_grad(), inductor_fixes():
        out = torch._inductor.aoti_compile_and_package(
            program, package_path=str(path), inductor_configs=options
        )
    return Path(out)


def load_package(path: Path, device: torch.device) -> Runner:
    """A runner for the package at ``path`` on ``device`` (single-threaded: CUDA-graph safe)."""
    from kiln.deploy._fuse_conv import register_operators, register_shapes

    # a package calls the operators Inductor could not compile in through torch's dispatcher;
    # kiln's Triton one only where the package does (importing Triton costs a cold start)
    if _calls(path, b'"kiln::conv2d_b1"'):
        register_operators()
    else:
        register_shapes()
    # the loader's default device_index (-1): the current device, set here
    with torch.cuda.device(device) if device.type == "cuda" else nullcontext():
        return _package_runner(path)


def _package_runner(path: Path) -> Runner:
    """torch's C++ package loader for the one model in ``path``, built directly.
    ``aoti_load_package`` would first compare this machine with the package's
    (``get_device_information``, which asks Inductor for the CPU's vector instruction set:
    test programs compiled and loaded in child processes on a fresh machine) only to log a
    mismatch; a tiny package took 77 s to load on the H100 image, and that is the suspect."""
    names = _model_names(path)
    loader_type = getattr(getattr(torch._C, "_aoti", None), "AOTIModelPackageLoader", None)
    if loader_type is not None and len(names) == 1:
        loader = loader_type(str(path), names[0], True, 1, -1)
        return lambda x: loader.boxed_run([x])[0]
    # another torch, or several models: torch's own way
    compiled = torch._inductor.aoti_load_package(str(path), run_single_threaded=True)
    boxed = getattr(getattr(compiled, "loader", None), "boxed_run", None)
    if boxed is None:  # older runtimes: the pytree-flattening __call__
        return lambda x: compiled(x)
    return lambda x: boxed([x])[0]


def _calls(path: Path, target: bytes) -> bool:
    """Whether a package's extern calls (its ``*.wrapper.json``, a few kB) name ``target``."""
    try:
        with zipfile.ZipFile(path) as archive:
            return any(target in archive.read(name) for name in archive.namelist()
                       if name.endswith(".json") and "/aotinductor/" in name)  # fmt: skip
    except (OSError, zipfile.BadZipFile):
        return False


def _model_names(path: Path) -> list[str]:
    """The AOTInductor models a package holds (``<archive>/data/aotinductor/<name>/...``)."""
    try:
        with zipfile.ZipFile(path) as archive:
            found = (_MODEL_ENTRY.search(name) for name in archive.namelist())
            return sorted({match.group(1) for match in found if match})
    except zipfile.BadZipFile:
        raise ValueError(
            f"{path} is not an AOTInductor package (a .pt2 zip archive): rebuild it with "
            f"kiln.deploy.optimize and kiln.deploy.save"
        ) from None


_MODEL_ENTRY = re.compile(r"(?:^|/)data/aotinductor/([^/]+)/")


def jit_compile(module: nn.Module, example: torch.Tensor, options: dict[str, Any]) -> Runner:
    """The same Inductor build in this process (``torch.compile`` of the static program), for
    machines where AOTInductor cannot build a package (no C++ toolchain or CUDA headers).
    It compiles on the first call."""
    static = torch.export.export(module, (example,)).module()  # a graph of its own per size
    compiled = torch.compile(static, options=options, dynamic=False, fullgraph=True)
    built = False

    def run(x: torch.Tensor) -> torch.Tensor:
        nonlocal built
        with torch.no_grad():  # freezing applies to inference only
            if built:
                return compiled(x)
            with inductor_fixes():  # the first call compiles
                out = compiled(x)
            built = True
            return out

    return run
