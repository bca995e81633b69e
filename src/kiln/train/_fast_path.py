"""What ``fit`` turns on by itself on a GPU, and when each choice is safe.

Each option is "auto" (decided here), True (required: an error says why it can't be) or False.
"""

from __future__ import annotations

import contextlib
import functools
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import torch
from torch import nn

from kiln._shared_setting import SharedSetting
from kiln.layers import _compiled_step

_GRAPH_SAFE_OPTIMIZERS = (torch.optim.Adam, torch.optim.AdamW)


def use_channels_last(option: bool | str, model: nn.Module, device: torch.device) -> bool:
    """channels_last pays on GPUs for models with 2-D convolutions (4-D weights)."""
    if option != "auto":
        return bool(option)
    return device.type == "cuda" and any(p.dim() == 4 for p in model.parameters())


# cuDNN autotuning pays for itself from this many convolution weights on (ResNet-50: 23.5M).
# LeNet-5 (2,550) trained as fast without it on an H100 and started 1.8 s sooner (2026-11-27,
# BENCHMARKS.md); with it, the kernels it picked differed from run to run. The threshold
# between is a guess, not yet measured.
AUTOTUNE_MIN_CONV_WEIGHTS = 1_000_000


def use_cudnn_benchmark(option: bool | str, model: nn.Module, device: torch.device) -> bool:
    """cuDNN's autotuning ("auto": on GPUs, for models with large convolutions)."""
    if option != "auto":
        return bool(option)
    weights = sum(p.numel() for p in model.parameters() if p.dim() in (3, 4, 5))
    return device.type == "cuda" and weights >= AUTOTUNE_MIN_CONV_WEIGHTS


Method = TypeVar("Method", bound=Callable[..., Any])


def scoped_settings(method: Method) -> Method:
    """Run a Trainer method with the process-wide settings the trainer owns, and put them back
    afterwards, so that a second model in the same process, a tuning study's next trial, or the
    user's own torch.compile starts from its own choice:

    - ``torch.backends.cudnn.benchmark`` as the trainer chose it (``trainer.cudnn_benchmark``);
    - the layers' shapes for the trainer's own compiled step
      (``kiln.layers._compiled_step.TRAINER_ACTIVE``: small convolutions as matrix products,
      products padded to aligned sizes), never in the user's torch.compile or torch.export."""

    @functools.wraps(method)
    def scoped(trainer: Any, *args: Any, **kwargs: Any) -> Any:
        with contextlib.ExitStack() as held:
            held.enter_context(_TRAINER_ACTIVE.held(True))
            if trainer.device.type == "cuda":
                held.enter_context(_CUDNN_BENCHMARK.held(trainer.cudnn_benchmark))
            return method(trainer, *args, **kwargs)

    return scoped  # type: ignore[return-value]


def _set_trainer_active(value: bool) -> None:
    _compiled_step.TRAINER_ACTIVE = value


def _set_cudnn_benchmark(value: bool) -> None:
    torch.backends.cudnn.benchmark = value


# Held while any trainer's fit/evaluate/predict runs, in any thread (tuning workers may train
# in threads of one process: the first to finish must not put a value back under the others;
# with cuDNN autotuning, the trainer that entered last sets it)
_TRAINER_ACTIVE = SharedSetting(lambda: _compiled_step.TRAINER_ACTIVE, _set_trainer_active)
_CUDNN_BENCHMARK = SharedSetting(lambda: torch.backends.cudnn.benchmark, _set_cudnn_benchmark)


# torch.compile modes kiln passes through (it captures CUDA graphs itself: no "reduce-overhead"),
# and kiln's own "coordinate-descent": torch's default mode with Inductor's coordinate-descent
# tuning of its generated kernels' block sizes (``tune_kernels``)
COMPILE_MODES = ("default", "max-autotune-no-cudagraphs", "coordinate-descent")


def use_compile(option: bool | str, device: torch.device) -> bool:
    """torch.compile the forward and loss on GPUs; on CPUs compiling costs more than it saves.
    A mode name (``COMPILE_MODES``) compiles in that mode."""
    if isinstance(option, str) and option != "auto" and option not in COMPILE_MODES:
        raise ValueError(
            f"compile must be True, False, 'auto' or a mode of {COMPILE_MODES}; received "
            f"{option!r}. ('reduce-overhead' and 'max-autotune' capture CUDA graphs, which kiln "
            f"does itself: use 'max-autotune-no-cudagraphs'.)"
        )
    use = device.type == "cuda" if option == "auto" else bool(option)
    if use:
        enable_compile_cache()
    return use


# Start Inductor's compile workers when fit() begins if its cache has never held a compiled
# graph (False: always when Inductor first compiles, as torch does)
WARM_COMPILE_WORKERS = True


def warm_compile_workers() -> bool:
    """Start Inductor's pool of compile processes now, in the background, when every kernel is
    going to be compiled: its cache folder has no compiled graph yet. Inductor starts the pool
    itself only once Dynamo has traced the step; begun at fit()'s start, the processes' own
    start (each imports torch) overlaps the data's move to the GPU, the model's build and the
    trace. With a warm cache the pool has little to do, and its 16 starting processes slowed
    the rest (LeNet-5 on an H200: from fit() to the first epoch 13.1 s cold against 17.3 s
    when Inductor started it, 6.2 s warm against 5.3 s; 2026-11-28, first_step_profile.py).
    Does nothing where Inductor would not use the pool (one compile thread, no Triton,
    ``TORCH_WARM_POOL=0``). Returns whether it started the pool."""
    if not WARM_COMPILE_WORKERS:
        return False
    # the folder from the variable kiln sets (``enable_compile_cache``): importing Inductor to
    # ask it took 1.1 s (H200, 2026-11-28), which a warm cache and a background compile spare
    folder = os.environ.get("TORCHINDUCTOR_CACHE_DIR")
    if folder is None:
        from torch._inductor.runtime.cache_dir_utils import cache_dir

        folder = cache_dir()
    if (Path(folder) / "fxgraph").is_dir():
        return False
    from torch._inductor.async_compile import maybe_warm_pool

    maybe_warm_pool()
    return True


# models of up to this many parameters train while their step compiles ("auto"): LeNet-5 has
# 61,706. The compile runs the step once on a copy of the model, so for that moment the run
# holds a second model and its activations: ResNet-50 (25.6M) compiles before its first step,
# as torch.compile does, keeping its peak memory that of the compiled loop
BACKGROUND_MAX_PARAMS = 5_000_000


def use_background_compile(
    option: bool | str,
    *,
    mode: str | None,
    device: torch.device,
    model: nn.Module,
    distributed: bool,
    captures: bool,
    precision: str,
    gather_in_graph: bool,
) -> bool:
    """Train with the eager step while the compiled one is built (``CompileBehind``)? "auto":
    on a GPU, for a small model whose step is captured in CUDA graphs (the eager step, replayed,
    then needs little of the CPU that the compile needs), in torch's default compile mode (the
    autotuning modes time kernels, which a training GPU would disturb), in one process, and not
    with the float8 layers or ``gather_in_graph``, nor under
    ``torch.use_deterministic_algorithms`` (the step where the switch comes depends on time,
    and the compile's run draws from the random generators the training draws from). True
    turns it on wherever the step compiles (on a CPU too), False off."""
    if option != "auto":
        return bool(option)
    small = sum(p.numel() for p in model.parameters()) <= BACKGROUND_MAX_PARAMS
    plain = mode is None and precision != "fp8" and not (distributed or gather_in_graph)
    plain = plain and not torch.are_deterministic_algorithms_enabled()
    return device.type == "cuda" and captures and plain and small


# Dynamo puts a ``with torch.autocast(...)`` block in the step's graph as calls to these two,
# which AOTAutograd's cache does not know to be safe: it then skipped its cache for every
# mixed-precision step ("Bypassing autograd cache ... _enter_autocast"), so a warm start traced
# the forward and backward again. Their arguments (device, dtype) are constants of the graph
# and so part of its cache key: a bf16 step and an fp16 step get different entries.
_AUTOCAST_CALLS = ("torch.amp.autocast_mode._enter_autocast",
                   "torch.amp.autocast_mode._exit_autocast")  # fmt: skip


def compile_step(fn: Callable[..., Any], mode: str | None) -> Callable[..., Any]:
    """``torch.compile(fn)`` in a mode of ``COMPILE_MODES`` ("coordinate-descent" becomes
    Inductor's option), its mixed-precision graphs cacheable by AOTAutograd
    (``_AUTOCAST_CALLS``; LeNet-5 in bf16 on the dev CPU: a warm fit() 3.1-3.2 s against
    3.7-3.8 s). The marking is process-wide, as Inductor's config is, and adds to what the
    user marked."""
    if mode == "coordinate-descent":
        compiled = torch.compile(fn, options={"coordinate_descent_tuning": True})
    else:
        compiled = torch.compile(fn, mode=mode)  # imports Inductor's config
    from torch._inductor import config

    user = config.unsafe_marked_cacheable_functions
    config.unsafe_marked_cacheable_functions = {**dict.fromkeys(_AUTOCAST_CALLS, torch.__version__),
                                                **user}  # fmt: skip
    return compiled


# Coordinate-descent tuning, measured on an H200 (2026-11-28, BENCHMARKS.md): ResNet-50's step
# (SGD, no CUDA graphs) 35.8-36.9 ms against 37.6-38.7 for torch's default and the compile loop
# (1.05x both times); its first compile 249-289 s against 46-66 s, 76 s from a warm cache. LeNet-5
# (H100, 2026-11-28) was 6% slower tuned. "auto" tunes where those numbers say it pays: a conv net
# as large as the cuDNN autotuning threshold, on a fit long enough that a warm start's extra half
# minute is small (at 1.8 ms a step saved, 20,000 steps repay 36 s; a 90-epoch ImageNet run
# at batch 256 has 450,000), and only where it was measured: one process, no CUDA graphs.
TUNE_MIN_STEPS = 20_000


def tune_kernels(
    model: nn.Module, device: torch.device, steps: int, *, captures: bool, distributed: bool
) -> bool:
    """Whether "auto" compiles with coordinate-descent tuning (see ``TUNE_MIN_STEPS``)."""
    if device.type != "cuda" or captures or distributed or steps < TUNE_MIN_STEPS:
        return False
    conv = sum(p.numel() for p in model.parameters() if p.dim() == 4)
    return conv >= AUTOTUNE_MIN_CONV_WEIGHTS


def compile_mode(option: bool | str) -> str | None:
    """The torch.compile mode for a ``compile`` option (None: torch's default)."""
    return option if isinstance(option, str) and option in COMPILE_MODES[1:] else None


def use_cuda_graphs(
    option: bool | str, device: torch.device, precision: str, optimizer: torch.optim.Optimizer
) -> bool:
    """Capture the whole step when nothing in it needs the host (see ``CudaGraphStep``)."""
    if option is False:
        return False
    reason = _graph_blocker(device, precision, optimizer)
    if reason and option is True:
        raise ValueError(f"cuda_graphs=True cannot work here: {reason}. Pass cuda_graphs='auto'.")
    return reason is None


def _graph_blocker(
    device: torch.device, precision: str, optimizer: torch.optim.Optimizer
) -> str | None:
    if device.type != "cuda":
        return f"the device is {device}, not a CUDA GPU"
    if precision == "fp16":
        return "fp16 loss scaling reads the overflow flag on the host every step"
    fused = all(group.get("fused") for group in optimizer.param_groups)
    if not (isinstance(optimizer, _GRAPH_SAFE_OPTIMIZERS) and fused):
        return (
            f"the optimizer ({type(optimizer).__name__}) is not a fused Adam/AdamW, the ones whose "
            "learning rate can live on the device (a captured float would freeze schedules)"
        )
    return None


def make_capturable(optimizer: torch.optim.Optimizer, device: torch.device) -> None:
    """Mark the optimizer graph-safe and keep each group's lr in a device tensor, so that
    schedules still change it when the step is a replayed CUDA graph."""
    for group in optimizer.param_groups:
        lr = group["lr"]
        value = float(lr) if isinstance(lr, torch.Tensor) else lr
        group["lr"] = torch.tensor(value, dtype=torch.float32, device=device)
        group["capturable"] = True


def to_channels_last(x: Any) -> Any:
    if isinstance(x, torch.Tensor) and x.dim() == 4 and x.is_floating_point():
        return x.contiguous(memory_format=torch.channels_last)
    return x


# where Inductor keeps compiled kernels unless TORCHINDUCTOR_CACHE_DIR says otherwise
DEFAULT_COMPILE_CACHE = Path.home() / ".cache" / "kiln" / "torchinductor"


def compile_cache_dir() -> Path:
    """The folder of Inductor's compiled kernels for kiln's runs (``kiln cache`` shows it)."""
    return Path(os.environ.get("TORCHINDUCTOR_CACHE_DIR") or DEFAULT_COMPILE_CACHE)


def enable_compile_cache() -> None:
    """Keep Inductor's compiled kernels in ~/.cache/kiln, so a second run starts fast."""
    os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", str(DEFAULT_COMPILE_CACHE))


# Weights, gradients and Adam's two moments, per parameter, in the parameter's dtype (fp32: 16 B)
_TRAINING_COPIES = 4
# ... may take this share of a GPU under DDP; activations and workspaces need the rest
_DDP_SHARE = 0.5


def auto_strategy(model: nn.Module, gpu_bytes: int | None) -> tuple[str, str]:
    """DDP, unless the model's training state would crowd one GPU (`gpu_bytes`: its memory; None
    on CPUs, where DDP always runs): then FSDP, which shards it across the ranks. Returns the
    strategy and why, in words for the user."""
    state = _TRAINING_COPIES * sum(p.numel() * p.element_size() for p in model.parameters())
    if gpu_bytes is None or state <= _DDP_SHARE * gpu_bytes:
        return "ddp", "the model's training state fits one GPU"
    gb = 1024**3
    return "fsdp", (
        f"the model's weights, gradients and optimizer state need about {state / gb:.1f} GB, "
        f"more than half of one GPU's {gpu_bytes / gb:.0f} GB: sharding them with FSDP "
        f'(strategy="fsdp"; pass strategy="ddp" to keep a whole copy on each GPU)'
    )


def keep_gathered(
    model: nn.Module, gpu_bytes: int | None, world_size: int, gathered_size: int | None
) -> tuple[bool, str]:
    """Under FSDP, whether each unit keeps its gathered parameters from its forward to its
    backward (``reshard_after_forward=False``: one all-gather per unit a step instead of two,
    the memory of ZeRO-2) rather than freeing them after the forward. Kept when a GPU's share of
    the training state plus every gathered parameter (``gathered_size`` bytes each, the
    parameters' own when None) fits in the share of the GPU that DDP's whole state may take.
    A 1B transformer on 4 H200s ran at 94% of one GPU's speed per GPU kept, 79-90% freed
    (BENCHMARKS.md). Never on CPUs (no memory to weigh: full sharding, the least memory).
    Returns the choice and why, in words."""
    if gpu_bytes is None:
        return False, "on CPUs FSDP frees each unit's gathered parameters after its forward"
    params = list(model.parameters())
    state = _TRAINING_COPIES * sum(p.numel() * p.element_size() for p in params)
    gathered = sum(p.numel() * (gathered_size or p.element_size()) for p in params)
    held, gb = state / world_size + gathered, 1024**3
    if held <= _DDP_SHARE * gpu_bytes:
        return True, (
            f"FSDP keeps each block's gathered weights from its forward to its backward "
            f"({gathered / gb:.1f} GB a GPU): one all-gather per block a step instead of two "
            f"(pass reshard_after_forward=True for the least memory)"
        )
    return False, (
        f"FSDP frees each block's gathered weights after its forward: with them kept, "
        f"{held / gb:.1f} GB of training state would take more than half of one GPU's "
        f"{gpu_bytes / gb:.0f} GB"
    )
