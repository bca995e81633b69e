"""Batch-1 2-D convolutions as split-K implicit-GEMM Triton kernels (an experiment).

At batch 1 a ResNet-50's convolutions are small matrix products: M = output pixels (3,136 down
to 49), N = output channels, K = input channels x kernel taps (64 up to 4,608). cuDNN runs each
in 3-16 us on an H200 with few thread blocks: the stage-4 3x3s have 49 x 512 outputs and read
4.7 MB of weights. This kernel splits K across thread blocks as well as M and N, so that every
layer fills the GPU, and reduces the splits inside the same kernel: each block writes its fp32
partial tile to a workspace and counts itself in on a per-tile counter; the last block of a tile
sums the partials and applies the epilogue (bias, residual add, ReLU, fp16 store). The
counters are left at zero by that last block, so one zeroed buffer serves every call on a
stream (as CUTLASS's split-K semaphores do): no memset and no second kernel per call.

Layout: ``x`` channels_last (1, C, H, W), i.e. an (H, W, C) array; the weight as a (K, N)
matrix with K ordered (kh, kw, c) (``gemm_weight``); ``z`` and the output channels_last
(1, N, OH, OW), i.e. (M, N). ``C`` must be a multiple of ``BLOCK_K`` so that each K block
reads one kernel tap's contiguous channels.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import triton
import triton.language as tl


@dataclass(frozen=True)
class Config:
    """A launch of the kernel: the output tile (pixels x channels), the K step, the number of
    K splits, Triton's warps and pipeline stages, and whether to launch it as a programmatic
    dependent launch (``pdl``, GPUs of compute capability 9+: the kernel may be scheduled
    while the one before it finishes, and waits for it before touching memory)."""

    block_m: int = 32
    block_n: int = 64
    block_k: int = 64
    split_k: int = 1
    num_warps: int = 4
    num_stages: int = 3
    pdl: bool = False

    def key(self) -> str:
        return (f"m{self.block_m}n{self.block_n}k{self.block_k}s{self.split_k}"
                f"w{self.num_warps}p{self.num_stages}" + ("-pdl" if self.pdl else ""))  # fmt: skip


@triton.jit(do_not_specialize=["count_offset"])
def _conv_kernel(x_ptr, w_ptr, bias_ptr, z_ptr, out_ptr, ws_ptr, count_ptr,
                 H, W, C, OW, M, N, k_per_split, count_offset,
                 KW: tl.constexpr, STRIDE: tl.constexpr, PAD: tl.constexpr,
                 HAS_BIAS: tl.constexpr, HAS_Z: tl.constexpr, RELU: tl.constexpr,
                 SPLIT: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
                 BLOCK_K: tl.constexpr, PDL: tl.constexpr):  # fmt: skip
    if PDL:  # launched early: the kernel before this one must be done (its memory visible)
        tl.extra.cuda.gdc_wait()
    pid_m = tl.program_id(0)
    pid_n = tl.program_id(1)
    pid_k = tl.program_id(2)
    rm = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    rn = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    rk = tl.arange(0, BLOCK_K)
    oh = rm // OW
    ow = rm - oh * OW
    in_m = rm < M
    in_n = rn < N
    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    k_start = pid_k * k_per_split
    for k0 in range(k_start, k_start + k_per_split, BLOCK_K):
        tap = k0 // C
        c0 = k0 - tap * C
        kh = tap // KW
        kw = tap - kh * KW
        ih = oh * STRIDE - PAD + kh
        iw = ow * STRIDE - PAD + kw
        valid = in_m & (ih >= 0) & (ih < H) & (iw >= 0) & (iw < W)
        a = tl.load(x_ptr + ((ih * W + iw) * C + c0)[:, None] + rk[None, :],
                    mask=valid[:, None], other=0.0)  # fmt: skip
        b = tl.load(w_ptr + (k0 + rk)[:, None] * N + rn[None, :], mask=in_n[None, :], other=0.0)
        acc += tl.dot(a, b)
    if PDL:  # the next kernel may be scheduled now (it waits for this one to finish)
        tl.extra.cuda.gdc_launch_dependents()
    offsets = rm[:, None] * N + rn[None, :]
    inside = in_m[:, None] & in_n[None, :]
    if SPLIT:
        split_k = tl.num_programs(2)
        tile = count_offset + pid_m * tl.num_programs(1) + pid_n
        tl.store(ws_ptr + pid_k * M * N + offsets, acc, mask=inside)
        tl.debug_barrier()  # every thread's partial is written before the block counts itself in
        arrived = tl.atomic_add(count_ptr + tile, 1, sem="acq_rel")
        if arrived == split_k - 1:  # the last block of this tile: sum the partials
            acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
            for s in range(0, split_k):
                acc += tl.load(ws_ptr + s * M * N + offsets, mask=inside, other=0.0,
                               cache_modifier=".cg")  # fmt: skip
            _epilogue(acc, bias_ptr, z_ptr, out_ptr, rn, offsets, inside, in_n,
                      HAS_BIAS, HAS_Z, RELU)  # fmt: skip
            tl.atomic_xchg(count_ptr + tile, 0)  # ready for the next call
    else:
        _epilogue(acc, bias_ptr, z_ptr, out_ptr, rn, offsets, inside, in_n,
                  HAS_BIAS, HAS_Z, RELU)  # fmt: skip


@triton.jit
def _epilogue(acc, bias_ptr, z_ptr, out_ptr, rn, offsets, inside, in_n,
              HAS_BIAS: tl.constexpr, HAS_Z: tl.constexpr, RELU: tl.constexpr):  # fmt: skip
    if HAS_BIAS:
        acc += tl.load(bias_ptr + rn, mask=in_n, other=0.0).to(tl.float32)[None, :]
    if HAS_Z:
        acc += tl.load(z_ptr + offsets, mask=inside, other=0.0).to(tl.float32)
    if RELU:
        acc = tl.maximum(acc, 0.0)
    tl.store(out_ptr + offsets, acc.to(out_ptr.dtype.element_ty), mask=inside)


def gemm_weight(weight: torch.Tensor) -> torch.Tensor:
    """A convolution weight (N, C, KH, KW) as the kernel's (KH * KW * C, N) matrix."""
    n = weight.shape[0]
    return weight.permute(2, 3, 1, 0).reshape(-1, n).contiguous()


_COUNTERS: dict[torch.device, torch.Tensor] = {}
COUNTER_SLOTS = 1 << 16


def counters(device: torch.device) -> torch.Tensor:
    """The device's zeroed tile counters (each kernel leaves them at zero), for eager calls."""
    if device not in _COUNTERS:
        _COUNTERS[device] = torch.zeros(COUNTER_SLOTS, dtype=torch.int32, device=device)
    return _COUNTERS[device]


def supports(c: int, kernel: tuple[int, ...], stride: tuple[int, ...],
             padding: tuple[int, ...], dilation: tuple[int, ...], groups: int) -> bool:  # fmt: skip
    """Whether the kernel runs a convolution: square kernel, equal strides and paddings, no
    groups or dilation, input channels a multiple of 64."""
    return (groups == 1 and all(d == 1 for d in dilation) and len(set(kernel)) == 1
            and len(set(stride)) == 1 and len(set(padding)) == 1 and c % 64 == 0)  # fmt: skip


def conv2d_b1(x: torch.Tensor, w_kn: torch.Tensor, bias: torch.Tensor | None,
              z: torch.Tensor | None, kernel: int, stride: int, padding: int, relu: bool,
              config: Config, count: torch.Tensor | None = None,
              count_offset: int = 0) -> torch.Tensor:  # fmt: skip
    """``[relu](conv2d(x, w) + bias [+ z])`` for one image; ``w_kn`` from ``gemm_weight``.
    ``count``: the zeroed tile counters to use from ``count_offset`` on (by default the
    device's own)."""
    _, c, h, w = x.shape
    k, n = w_kn.shape
    if x.shape[0] != 1 or k != kernel * kernel * c:
        raise ValueError(f"conv2d_b1 takes one image and a ({kernel}*{kernel}*C, N) weight. "
                         f"Received: x {tuple(x.shape)}, weight {tuple(w_kn.shape)}.")  # fmt: skip
    grid, ints, constants = launch(c, h, w, n, kernel, stride, padding, bias is not None,
                                   z is not None, relu, config, count_offset)  # fmt: skip
    x = x.contiguous(memory_format=torch.channels_last)
    oh, ow = output_size(h, w, kernel, stride, padding)
    out = torch.empty((1, n, oh, ow), dtype=x.dtype, device=x.device,
                      memory_format=torch.channels_last)  # fmt: skip
    split = config.split_k > 1
    workspace = out
    if split:
        workspace = torch.empty(config.split_k * oh * ow * n, dtype=torch.float32,
                                device=x.device)  # fmt: skip
        count = counters(x.device) if count is None else count
    if z is not None:
        z = z.contiguous(memory_format=torch.channels_last)
    _conv_kernel[grid](
        x, w_kn, bias if bias is not None else out, z if z is not None else out, out,
        workspace, count if split else out, *ints, **constants, **_pdl(config),
    )  # fmt: skip
    return out


def output_size(h: int, w: int, kernel: int, stride: int, padding: int) -> tuple[int, int]:
    return (h + 2 * padding - kernel) // stride + 1, (w + 2 * padding - kernel) // stride + 1


def tiles(m: int, n: int, config: Config) -> int:
    return triton.cdiv(m, config.block_m) * triton.cdiv(n, config.block_n)


Launch = tuple[tuple[int, int, int], list[int], dict[str, Any]]


def launch(c: int, h: int, w: int, n: int, kernel: int, stride: int, padding: int,
           has_bias: bool, has_z: bool, relu: bool, config: Config,
           count_offset: int = 0) -> Launch:  # fmt: skip
    """The kernel's grid, integer arguments and compile-time constants for one convolution."""
    k = kernel * kernel * c
    if c % config.block_k or (k // config.block_k) % config.split_k:
        raise ValueError(f"C={c} and K={k} must split into {config.split_k} x "
                         f"{config.block_k}-wide blocks.")  # fmt: skip
    oh, ow = output_size(h, w, kernel, stride, padding)
    m = oh * ow
    grid = (triton.cdiv(m, config.block_m), triton.cdiv(n, config.block_n), config.split_k)
    if config.split_k > 1 and count_offset + grid[0] * grid[1] > COUNTER_SLOTS:
        raise ValueError(f"{grid[0] * grid[1]} tiles from counter {count_offset}: more than "
                         f"the {COUNTER_SLOTS} counters.")  # fmt: skip
    constants = {"KW": kernel, "STRIDE": stride, "PAD": padding, "HAS_BIAS": has_bias,
                 "HAS_Z": has_z, "RELU": relu, "SPLIT": config.split_k > 1,
                 "BLOCK_M": config.block_m, "BLOCK_N": config.block_n,
                 "BLOCK_K": config.block_k, "PDL": config.pdl, "num_warps": config.num_warps,
                 "num_stages": config.num_stages}  # fmt: skip
    return grid, [h, w, c, ow, m, n, k // config.split_k, count_offset], constants


def warm(c: int, h: int, w: int, n: int, kernel: int, stride: int, padding: int,
         has_bias: bool, has_z: bool, relu: bool, config: Config,
         dtype: torch.dtype = torch.float16) -> None:  # fmt: skip
    """Compile the kernel for one convolution and config without running it (fills Triton's
    cache; a process pool can compile many configs side by side this way)."""
    grid, ints, constants = launch(c, h, w, n, kernel, stride, padding, has_bias, has_z, relu,
                                   config)  # fmt: skip
    # the unused workspace and counters are the output (as ``conv2d_b1`` passes them)
    split = config.split_k > 1
    pointers = [dtype] * 5 + ([torch.float32, torch.int32] if split else [dtype, dtype])
    _conv_kernel.warmup(*pointers, *ints, grid=grid, **constants, **_pdl(config))


def _pdl(config: Config) -> dict[str, bool]:
    """Triton's launch option for a programmatic dependent launch (none without one, which
    Triton's CPU interpreter would not take)."""
    return {"launch_pdl": True} if config.pdl else {}
