"""``kiln.deploy.optimize``: a trained model -> an ``Engine`` for fixed batch sizes.

The pipeline reads top to bottom: capture once (``torch.export``), apply the passes (fold
BatchNorm, precision, channels_last, cuDNN's fused convolution + ReLU, fp8, image input; then,
for the batch-1 graph alone, the space-to-depth stem and kiln's Triton convolutions), each
checked against the original model, then one runner per batch size: an AOTInductor package
(compiled with freezing) or the eager module, captured in a CUDA graph on GPUs. The packages'
static programs are re-exports of the transformed graph, not new captures of the user's model.
A probe process loads and runs the new packages before this one does (torch's C++ loader can
crash a process); where they cannot be built or that probe fails, the same Inductor build
compiles here with ``torch.compile``.
"""

from __future__ import annotations

import tempfile
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.export import ExportedProgram

from kiln._fp8 import fp8_unsupported, strip_float8
from kiln.deploy._aoti import SMALL_BATCH, inductor_options, jit_compile, load_package
from kiln.deploy._aoti_probe import probe_packages
from kiln.deploy._builds import build_packages, default_jobs
from kiln.deploy._capture import capture, eval_mode, single_output, tile
from kiln.deploy._check import Check, PassRejected, check, strict_fp32
from kiln.deploy._cuda_graph import GraphRunner, Runner
from kiln.deploy._engine import Engine
from kiln.deploy._fold import FoldBatchNorm
from kiln.deploy._fp8 import Float8Linear
from kiln.deploy._fuse_conv import FuseConvReLU
from kiln.deploy._image_input import ImageInput
from kiln.deploy._passes import ChannelsLast, Pass, copy_module, has_conv2d
from kiln.deploy._precision import Precision
from kiln.deploy._progress import Progress, watching
from kiln.deploy._space_to_depth import SpaceToDepthStem

PRECISIONS = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16,
              "fp8": torch.bfloat16}  # fmt: skip
# the error a runner may add to the passes' (compiled kernels reassociate sums)
RUNNER_TOLERANCE = {"fp32": 1e-4, "bf16": 3e-2, "fp16": 5e-3, "fp8": 5e-2}
AUTOTUNE = ("none", "small", "all")
CAPTURE_TOLERANCE = 1e-5


@dataclass
class Source:
    """What an engine was built from; ``kiln.deploy.save`` writes it to a repository."""

    model: nn.Module  # the original model (fp32, eval mode)
    program: ExportedProgram  # its capture, any batch size
    example: torch.Tensor  # a model input (CPU, a few rows)
    options: dict[str, Any]  # optimize's arguments, as JSON
    inputs: torch.Tensor  # engine inputs (images with image=), CPU, a few rows
    reference: torch.Tensor  # the original model's outputs for them
    outputs: torch.Tensor = field(default_factory=lambda: torch.empty(0))  # the engine's
    packages: dict[int, Path] = field(default_factory=dict)  # batch size -> AOTI package
    workdir: Any = None  # keeps the packages' temporary folder alive


def optimize(
    model: nn.Module,
    example: torch.Tensor,
    precision: str = "fp16",
    batch_sizes: Sequence[int] = (1, 8, 64, 256),
    device: str | torch.device | None = None,
    image: dict[str, Any] | None = None,
    *,
    compile: bool | str | None = None,
    autotune: str = "small",
    tolerance: float | None = None,
    fold: bool = True,
    fuse: bool | str = True,
    cuda_graphs: bool = True,
    jobs: int | None = None,
    inductor: dict[str, Any] | None = None,
    verbose: bool | None = None,
) -> Engine:
    """Optimize ``model`` for inference on ``device`` at fixed ``batch_sizes``.

    ``example``: a batch the model takes (its values drive the checks). ``precision``: "fp32",
    "bf16", "fp16" or "fp8" (torchao, GPUs of compute capability >= 8.9). ``image``: with
    ``{"mean": [...], "std": [...]}`` the engine takes uint8 (N, H, W, C) images and normalizes
    them inside. ``compile``: AOTInductor packages (default: on CUDA; on CPU the checked eager
    module runs, as a C++ build takes a while); "jit": the same Inductor build in this process
    with ``torch.compile``, no packages (faster to build, but ``kiln.deploy.load`` compiles
    again). ``autotune``: Inductor's max-autotune for
    "small" (batch size 1 only), "all" or "none" of the packages. It times kernel candidates
    on the GPU, one autotuned build at a time, so each autotuned size adds minutes to the
    build (ResNet-50 on an H100: more than the untuned builds together); it pays most at batch
    1, where latency is the goal, except where cuDNN's fused calls run the convolutions: there
    "small" tunes nothing (``engine.info["autotune"]`` says what ran; see
    ``effective_autotune``). "all" trades build time for large-batch throughput, "none" builds
    fastest. ``tolerance``: the relative error the precision may add (default: fp16
    5e-3, bf16 3e-2). ``jobs``: packages built in parallel processes, the autotuned first and
    then the largest batch first (default: one per 4 CPU cores on a GPU machine, 1 on a CPU).
    ``fuse``: on CUDA in fp16/bf16/fp8, each convolution with its bias, ReLU and residual
    add becomes one cuDNN call (``FuseConvReLU``; skipped, with a log line, where cuDNN cannot
    run it). With batch size 1 among the sizes, the batch-1 graph also runs a strided stem on
    few channels as a stride-1 convolution on more (``SpaceToDepthStem``) and each convolution
    that kiln's split-K Triton kernel runs faster at batch 1 (timed here, layer by layer) as
    that kernel (``TritonConv``, launched as programmatic dependent launches on compute
    capability 9+). ResNet-50 on an H200, 2026-11-28: the batch-1 engine 0.312 ms a call
    against 0.375 with cuDNN's calls alone (BENCHMARKS.md). ``fuse="cudnn"``: cuDNN's fused
    calls alone (a faster build: no kernel timing); ``False``: neither.
    ``inductor``: ``torch._inductor.config`` settings over kiln's (e.g.
    ``{"max_autotune_conv_backends": "ATEN,TRITON"}``). ``verbose``: log each phase (capture,
    each pass with its error, each package build, the runners) with its seconds to stderr
    (default: when compiling, which takes minutes). Whatever it is, ``engine.info["timings"]``
    holds each phase's seconds. The original model is left as it was.
    """
    _check_example(example)
    options = _options(precision, batch_sizes, image, compile, autotune, tolerance, fold, fuse)
    options.update(cuda_graphs=cuda_graphs, jobs=jobs, inductor=inductor or {})
    device = resolve_device(
        torch.device(device) if device is not None else _device_of(model, example)
    )
    if options["compile"] is None:
        options["compile"] = device.type == "cuda"
    if precision == "fp8" and (reason := fp8_unsupported(device)):
        raise ValueError(f"precision='fp8' is not available here: {reason}. Use 'bf16' or 'fp16'.")
    progress = Progress(options["compile"] if verbose is None else verbose)
    try:
        return _build(model, example, device, options, progress)
    finally:
        progress.close()


def _build(model: nn.Module, example: torch.Tensor, device: torch.device,
           options: dict[str, Any], progress: Progress) -> Engine:  # fmt: skip
    sizes = options["batch_sizes"]
    progress.log(f"optimize: {options['precision']} on {device}, batch sizes {sizes}, "
                 f"compile={options['compile']}, autotune={options['autotune']!r}")  # fmt: skip
    original = eval_mode(_snapshot(model, device))
    with strict_fp32(benchmark=True), torch.no_grad():
        with progress.phase("capture", "capture (torch.export)"):
            program = capture(original, example.to(device))
        module: nn.Module = program.module()
        passes = _passes(options, device, module, example)
        x, x_engine = _check_inputs(example.to(device), max(sizes), passes)
        reference = single_output(original(x), model)
        common = [p for p in passes if p.batch_sizes is None]
        module, checks, skipped, budget = _apply(module, common, x, x_engine, reference,
                                                 progress)  # fmt: skip
        modules, budgets = _apply_sized(module, [p for p in passes if p not in common], sizes,
                                        x_engine, reference, budget, checks, skipped,
                                        progress)  # fmt: skip
        rows = min(len(example), 8)
        source = Source(original, program, example[:rows].detach().cpu(), options,
                        x_engine[:rows].cpu(), reference[:rows].cpu())  # fmt: skip
        build = {**options, "autotune": effective_autotune(options["autotune"], checks)}
        if build["autotune"] != options["autotune"]:
            progress.log(f"autotune={options['autotune']!r}: batch {SMALL_BATCH} not autotuned, "
                         f"cuDNN's fused calls run the convolutions")  # fmt: skip
        runners, runner_check = _runners(modules, x_engine, reference, device, build, source,
                                         budgets, progress)  # fmt: skip
    info = {
        "precision": options["precision"], "device": str(device), "compiled": options["compile"],
        "cuda_graphs": device.type == "cuda" and options["cuda_graphs"],
        "image": options["image"], "autotune": build["autotune"],
        "passes": [*checks, runner_check], "skipped": skipped,
        "max_abs_error": runner_check["max_abs"], "rel_error": runner_check["rel"],
        "build_s": round(time.perf_counter() - progress.started, 2),
        "timings": progress.timings,  # "total" lands when optimize returns
    }  # fmt: skip
    engine = Engine(runners, tuple(x_engine.shape[1:]), x_engine.dtype, device, info=info,
                    source=source)  # fmt: skip
    source.outputs = engine(source.inputs).cpu()
    return engine


def effective_autotune(autotune: str, checks: list[dict[str, Any]]) -> str:
    """``autotune``, except that "small" tunes nothing once ``FuseConvReLU`` has put the
    convolutions in cuDNN's fused calls: max-autotune then sees little more than the classifier
    head. On ResNet-50 at batch 1 (H200, 2026-11-28) its builds replayed 2-3 us slower than
    untuned ones, and in two processes of three it chose a 42 us Triton kernel for the fp32
    head, where cuBLAS takes a few (the tuner timed the two within 15% of each other). It also
    saves the build the minutes that tuning takes. "all" still tunes every size."""
    fused = any(c.get("name") == FuseConvReLU.name and c.get("fused", 0) > 0 for c in checks)
    return "none" if autotune == "small" and fused else autotune


def _check_inputs(
    example: torch.Tensor, rows: int, passes: list[Pass]
) -> tuple[torch.Tensor, torch.Tensor]:
    """The checks' inputs: for the model, and for the engine (random images with image=)."""
    x = tile(example, rows)
    images = next((p for p in passes if isinstance(p, ImageInput)), None)
    if images is None:
        return x, x
    x_images = images.images_like(x)
    return images.normalize.to(x.device)(x_images), x_images


def _apply(
    module: nn.Module, passes: list[Pass], x: torch.Tensor, x_engine: torch.Tensor,
    reference: torch.Tensor, progress: Progress,
) -> tuple[nn.Module, list[dict[str, Any]], list[dict[str, str]], float]:  # fmt: skip
    """Apply ``passes`` in order, each checked against the original model's ``reference``
    within the sum of the tolerances so far. Returns the module, the checks, the optional
    passes skipped because they failed (name and reason) and the sum of the tolerances."""
    checks = [_entry(check("capture", module(x), reference, CAPTURE_TOLERANCE), None)]
    skipped: list[dict[str, str]] = []
    budget = CAPTURE_TOLERANCE
    for p in passes:
        x_next = x_engine if isinstance(p, ImageInput) else x  # the engine's input from here
        tried = _try(p, module, x_next, reference, budget + p.tolerance, skipped, progress)
        if tried is None:
            continue
        module, x, budget = tried[0], x_next, budget + p.tolerance
        checks.append(_entry(tried[1], p))
    return module, checks, skipped, budget


def _try(p: Pass, module: nn.Module, x: torch.Tensor, reference: torch.Tensor,
         tolerance: float, skipped: list[dict[str, str]], progress: Progress,
         what: str = "") -> tuple[nn.Module, Check] | None:  # fmt: skip
    """``p`` applied to ``module`` and checked on ``x`` within ``tolerance``, logged; None
    (with the reason in ``skipped``) where an optional pass failed; raises where any other
    did."""
    started = time.perf_counter()
    progress.status(f"pass {p.name}")
    try:
        candidate = p.apply(module)
        result = check(p.name, candidate(x), reference, tolerance)
    except (PassRejected, RuntimeError) as e:
        if not p.optional:
            raise
        reason = (str(e).strip().splitlines() or [type(e).__name__])[0][:300]
        skipped.append({"name": p.name, "reason": reason})
        progress.log(f"pass {p.name}: skipped ({reason})")
        return None
    progress.record(f"pass_{p.name}", time.perf_counter() - started)
    progress.log(f"pass {p.name}{what}: rel err {result.rel:.3g} (<= {tolerance:.3g}) in "
                 f"{progress.timings[f'pass_{p.name}']:.1f} s")  # fmt: skip
    return candidate, result


def _apply_sized(
    module: nn.Module, passes: list[Pass], sizes: list[int], x: torch.Tensor,
    reference: torch.Tensor, budget: float, checks: list[dict[str, Any]],
    skipped: list[dict[str, str]], progress: Progress,
) -> tuple[dict[int, nn.Module], dict[int, float]]:  # fmt: skip
    """Each batch size's module and error budget after the passes that rewrite only some
    sizes' graphs (``Pass.batch_sizes``; ``x`` is the engine's input). Each such pass is
    applied once to the module its sizes share, and checked at the smallest of them; its
    check (with ``batch_sizes``) and its skips join ``checks`` and ``skipped``."""
    modules = dict.fromkeys(sizes, module)
    budgets = dict.fromkeys(sizes, budget)
    for p in passes:
        targets = [s for s in sizes if s in (p.batch_sizes or ())]
        if not targets:
            continue
        if len({id(modules[s]) for s in targets}) > 1:
            raise ValueError(f"pass {p.name!r} rewrites batch sizes {targets}, whose graphs "
                             f"earlier passes made differ.")  # fmt: skip
        rows, tolerance = targets[0], budgets[targets[0]] + p.tolerance
        tried = _try(p, modules[rows], x[:rows], reference[:rows], tolerance, skipped, progress,
                     f" (batch {', '.join(map(str, targets))})")  # fmt: skip
        if tried is None:
            continue
        for size in targets:
            modules[size], budgets[size] = tried[0], tolerance
        checks.append({**_entry(tried[1], p), "batch_sizes": targets})
    return modules, budgets


def _runners(
    modules: dict[int, nn.Module], x: torch.Tensor, reference: torch.Tensor,
    device: torch.device, options: dict[str, Any], source: Source, budgets: dict[int, float],
    progress: Progress,
) -> tuple[dict[int, Runner], dict[str, Any]]:  # fmt: skip
    """One runner per batch size (from its own module), each checked on the first rows of
    ``x`` within that size's error budget."""
    sizes, compiled = options["batch_sizes"], options["compile"]
    extra = RUNNER_TOLERANCE[options["precision"]] if compiled else 0.0
    started = time.perf_counter()
    if compiled and compiled != "jit":
        source.workdir = tempfile.TemporaryDirectory(prefix="kiln-deploy-")
        with progress.phase("packages", f"AOTInductor packages for batch sizes {sizes}"):
            source.packages = _packages(modules, x, device, options,
                                        Path(source.workdir.name), progress)  # fmt: skip
    compile_s = time.perf_counter() - started
    runners: dict[int, Runner] = {}
    worst = Check("", 0.0, 0.0, max(budgets.values()) + extra)
    graphs = device.type == "cuda" and options["cuda_graphs"]
    steps = ["package" if source.packages else "compile" if compiled else "eager"]
    what = ", ".join([*steps, *(["CUDA graph"] if graphs else []), "check"])
    with progress.phase("runners", f"runners ({what}) for batch sizes {sizes}"):
        pool = None
        for size in sizes:
            size_started = time.perf_counter()
            with watching():  # $KILN_BUILD_STACKS: the in-process compile happens here
                if size in source.packages:
                    run = load_package(source.packages[size], device)
                elif compiled:
                    run = jit_compile(modules[size], x[:size], _inductor(device, size, options))
                else:
                    run = _eager(modules[size])
                if graphs:
                    run = graphed = GraphRunner(run, x[:size], pool)
                    pool = graphed.pool
            runners[size] = run
            name = f"{'compiled' if compiled else 'eager'} batch {size}"
            result = check(name, run(x[:size]), reference[:size], budgets[size] + extra)
            worst = max(worst, result, key=lambda c: c.rel)
            progress.log(f"batch {size}: runner ready ({what}: rel err {result.rel:.3g}) in "
                         f"{time.perf_counter() - size_started:.1f} s")  # fmt: skip
    kind = ("aoti_compile" if source.packages else "inductor_jit") if compiled else "eager"
    entry = {**_entry(worst, None), "name": kind,
             "batch_sizes": sizes, "compile_s": round(compile_s, 1)}  # fmt: skip
    return runners, entry


def _packages(modules: dict[int, nn.Module], x: torch.Tensor, device: torch.device,
              options: dict[str, Any], folder: Path,
              progress: Progress) -> dict[int, Path]:  # fmt: skip
    """AOTInductor packages per batch size, loaded once in a probe process; none (with a
    warning) where they cannot be built or loading them fails there."""
    sizes = options["batch_sizes"]
    jobs = 1 if options["precision"] == "fp8" else options["jobs"]  # torchao's tensors: in-process
    jobs = default_jobs(device, len(sizes)) if jobs is None else jobs
    configs = {s: _inductor(device, s, options) for s in sizes}
    examples = {s: x[:s] for s in sizes}
    try:
        progress.log(f"building {len(sizes)} packages, {jobs} at a time")
        paths = build_packages(modules, examples, configs, folder, jobs, progress)
    except Exception as e:  # a missing toolchain shows up as many error types
        first = str(e).strip().splitlines()[0] if str(e).strip() else ""
        return _without_packages(f"could not build packages ({type(e).__name__}: {first[:300]})")
    # torch's C++ loader can crash the process (SIGSEGV): let it crash another one first
    with progress.phase("probe", "loading the packages in a probe process"):
        graphs = device.type == "cuda" and options["cuda_graphs"]  # as _runners will run them
        reason = probe_packages(paths, device, examples, graphs=graphs)
    if reason is not None:
        return _without_packages(f"built packages, but {reason}",
                                 f" A different torch version may load them (this is torch "
                                 f"{torch.__version__}).")  # fmt: skip
    return paths


def _without_packages(what: str, advice: str = "") -> dict[int, Path]:
    warnings.warn(
        f"AOTInductor {what}; compiling with torch.compile in this process instead. The engine "
        f"is as fast, but kiln.deploy.save stores no packages, so kiln.deploy.load compiles "
        f"again.{advice}",
        stacklevel=6,  # optimize's caller: past _packages, _runners, _build and optimize
    )
    return {}


def _inductor(device: torch.device, size: int, options: dict[str, Any]) -> dict[str, Any]:
    return inductor_options(device, size, options["autotune"], options["inductor"])


def _eager(module: nn.Module) -> Runner:
    @torch.inference_mode()
    def run(batch: torch.Tensor) -> torch.Tensor:
        return module(batch)

    return run


def _passes(options: dict[str, Any], device: torch.device, module: nn.Module,
            example: torch.Tensor) -> list[Pass]:  # fmt: skip
    precision = options["precision"]
    passes: list[Pass] = [FoldBatchNorm()] if options["fold"] else []
    if precision != "fp32":
        passes.append(Precision(PRECISIONS[precision], options["tolerance"]))
    if device.type == "cuda" and has_conv2d(module):
        passes.append(ChannelsLast())
        if options["fuse"] and precision != "fp32" and torch.backends.cudnn.is_available():
            passes.append(FuseConvReLU())
            if options["fuse"] is True and 1 in options["batch_sizes"]:
                passes += [SpaceToDepthStem(), _triton_conv()]  # the batch-1 graph's
    if precision == "fp8":  # after the passes that copy weights: torchao's tensors stay put
        passes.append(Float8Linear())
    if options["image"] is not None:
        if example.dim() != 4:
            raise ValueError(
                f"image= is for models that take (N, C, H, W) images. Received: an example "
                f"of shape {tuple(example.shape)}."
            )
        passes.append(ImageInput(options["image"], example.shape[1]))
        options["image"] = passes[-1].image  # type: ignore[attr-defined]
    return passes


def _triton_conv() -> Pass:
    """``TritonConv`` (batch-1 convolutions as Triton kernels where they beat cuDNN); where
    Triton is not installed, a pass that is skipped saying so."""
    try:
        from kiln.deploy._conv_b1 import TritonConv
    except ImportError as e:
        return _Unavailable("triton_conv", f"Triton is not installed ({e}): pip install triton",
                            batch_sizes=(1,))  # fmt: skip
    return TritonConv()


class _Unavailable(Pass):
    """An optional pass that cannot run here: ``optimize`` skips it with ``reason``."""

    optional = True

    def __init__(self, name: str, reason: str,
                 batch_sizes: tuple[int, ...] | None = None) -> None:  # fmt: skip
        self.name, self.reason, self.batch_sizes = name, reason, batch_sizes

    def apply(self, module: nn.Module) -> nn.Module:
        raise PassRejected(self.reason)


def _entry(result: Check, p: Pass | None) -> dict[str, Any]:
    entry = {k: (float(f"{v:.4g}") if isinstance(v, float) else v)
             for k, v in result.as_dict().items()}  # fmt: skip
    return {**entry, **(p.describe() if p is not None else {})}


def _options(precision: str, batch_sizes: Sequence[int], image: dict[str, Any] | None,
             compile: bool | str | None, autotune: str, tolerance: float | None,
             fold: bool, fuse: bool | str) -> dict[str, Any]:  # fmt: skip
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}. "
                         f"Received: precision={precision!r}.")  # fmt: skip
    sizes = sorted(set(batch_sizes)) if batch_sizes else []
    if not sizes or not all(isinstance(s, int) and s >= 1 for s in sizes):
        raise ValueError(f"batch_sizes must be positive integers, at least one. "
                         f"Received: batch_sizes={batch_sizes!r}.")  # fmt: skip
    if autotune not in AUTOTUNE:
        raise ValueError(f"autotune must be one of {', '.join(AUTOTUNE)}. "
                         f"Received: autotune={autotune!r}.")  # fmt: skip
    if tolerance is not None and not tolerance > 0:
        raise ValueError(f"tolerance must be > 0. Received: tolerance={tolerance!r}.")
    if fuse not in (True, False, "cudnn", "triton"):
        raise ValueError(f"fuse must be True (cuDNN's fused calls and, at batch 1, kiln's Triton "
                         f"kernels), 'cudnn' (the fused calls alone) or False. "
                         f"Received: fuse={fuse!r}.")  # fmt: skip
    fuse = True if fuse == "triton" else fuse  # the name it had as an experiment
    if compile not in (None, True, False, "jit"):
        raise ValueError(f"compile must be True, False, 'jit' or None (CUDA: True, CPU: False). "
                         f"Received: compile={compile!r}.")  # fmt: skip
    return {"precision": precision, "batch_sizes": sizes, "image": image, "compile": compile,
            "autotune": autotune, "tolerance": tolerance, "fold": fold, "fuse": fuse}  # fmt: skip


def _check_example(example: Any) -> None:
    if not isinstance(example, torch.Tensor) or example.dim() < 1 or len(example) == 0:
        shape = tuple(example.shape) if isinstance(example, torch.Tensor) else type(example)
        raise ValueError(
            f"example must be a tensor batch of at least one sample, shaped (N, ...) as the "
            f"model takes it. Received: {shape}."
        )


def _device_of(model: nn.Module, example: torch.Tensor) -> torch.device:
    tensor = next(iter([*model.parameters(), *model.buffers()]), None)
    return tensor.device if tensor is not None else example.device


def resolve_device(device: torch.device) -> torch.device:
    if device.type == "cuda" and device.index is None:
        return torch.device("cuda", torch.cuda.current_device())
    return device


def _snapshot(model: nn.Module, device: torch.device) -> nn.Module:
    """A copy of ``model`` on ``device``: the engine and what ``save`` writes are a snapshot,
    whatever happens to the caller's model later (training on, moving it). A model trained with
    ``precision="fp8"`` is copied without its float8 products: its weights are full precision,
    and the engine's precision is optimize's choice."""
    return strip_float8(copy_module(model)).to(device)
