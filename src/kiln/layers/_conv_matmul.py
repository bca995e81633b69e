"""Small 2-D convolutions as one matrix product, for torch.compile on GPUs.

cuDNN is built for large convolutions. For small ones, like LeNet-5's (1 -> 6 and 6 -> 16
channels, 5x5, batch 128), it pads the channels to 8 in extra kernels and runs generic
kernels: on an H100 the two forward convolutions took 31 us, the second one's weight gradient
(three Winograd kernels) 33 us, of a 211 us training step (2026-11-28,
``scripts/lenet_kernel_profile.py``). The same convolution as a product of its unfolded input
(N*Ho*Wo rows of kh*kw*C values, laid out as channels_last memory already is) and the weight
lets Inductor write the unfolding into one generated kernel, fused with the casts around it,
and leaves cuBLAS a small matrix product; autograd derives the backward from the same ops.

On by default (``Conv2D.matmul_when_compiled``) since it was measured on GPUs: LeNet-5 trained
at 0.114 s/epoch with it against 0.136 with cuDNN in one call on an H100, and at 0.105 once the
product's sizes were padded to multiples of 8 (``ALIGN``; 0.120 unpadded in the same call;
2026-11-28, ``benchmarks/train_speed.py`` rows ``kiln``, ``kiln-cudnn``,
``kiln-conv-unaligned``; BENCHMARKS.md). Cutting the rows with one
strided slice per kernel offset (``ROWS = "slices"``) was slower there (0.164 s): Inductor wrote
each of the 25 slices as a kernel of its own. Used only while kiln's Trainer compiles its step
on CUDA (``_compiled_step``: not in eager code, where each window would be a kernel launch of
its own, nor in a model the user compiles or exports, whose graph keeps its convolutions), with
static shapes, for ungrouped, undilated convolutions as narrow as the measured ones
(``MAX_FILTERS``) whose unfolded input stays small (``MAX_COLUMNS``), and not under
``torch.use_deterministic_algorithms``: the backward of ``unfold`` adds with atomics.
"""

from __future__ import annotations

import torch
from torch import Tensor

from kiln.layers._compiled_step import padded_linear

MAX_COLUMNS = 1 << 23  # elements of the unfolded input: 8M (LeNet-5 at batch 128: 2.5M)
MAX_DEPTH = 512  # kh * kw * C: one row of the product
# output channels: LeNet-5's 6 and 16 were measured; wider layers (ResNet's 64 and up) fill
# cuDNN's tensor-core tiles and keep cuDNN until a measurement says otherwise
MAX_FILTERS = 16
# how the rows are cut: "unfold" (Tensor.unfold, one gather kernel; the backward scatters with
# atomic adds) or "slices" (one strided slice per kernel offset, stacked; no atomics, but a
# kernel per offset)
ROWS = "unfold"
# the product's depth (kh * kw * C) and filters padded with zeros to a multiple of this, so
# that cuBLAS can use its aligned kernels: LeNet-5's depths 25 and 150 and 6 filters left it
# kernels for unaligned 16-bit rows ("align1"/"align2"). Padded, an epoch took 0.105 against
# 0.120 s in one call on an H100 (its step's kernels 156.6 us; 179.4 unpadded on an H200),
# 2026-11-28; 1 pads nothing
ALIGN = 8


def use_matmul(x: Tensor, weight: Tensor, strides: tuple[int, ...], dilation: tuple[int, ...],
               groups: int) -> bool:  # fmt: skip
    """Whether this convolution (``x`` padded already) is small enough to run as a product."""
    if not all(isinstance(d, int) for d in x.shape):
        return False  # dynamic shapes: the size rule needs numbers
    if groups != 1 or any(d != 1 for d in dilation) or x.dim() != 4:
        return False
    if weight.shape[0] > MAX_FILTERS or torch.are_deterministic_algorithms_enabled():
        return False
    n, c = x.shape[:2]
    ho, wo = _output_size(x, weight, strides)
    depth = c * weight.shape[2] * weight.shape[3]
    return depth <= MAX_DEPTH and n * ho * wo * depth <= MAX_COLUMNS


def conv2d_as_matmul(x: Tensor, weight: Tensor, bias: Tensor | None,
                     strides: tuple[int, ...]) -> Tensor:  # fmt: skip
    """``F.conv2d(x, weight, bias, strides)`` (no padding, groups or dilation) as a product;
    the result is laid out channels_last."""
    n = x.shape[0]
    filters, channels, kh, kw = weight.shape
    sh, sw = strides
    ho, wo = _output_size(x, weight, strides)
    nhwc = x.permute(0, 2, 3, 1)
    if ROWS == "unfold":  # windows (N, Ho, Wo, C, kh, kw) as views, then one copy into rows
        rows = nhwc.unfold(1, kh, sh).unfold(2, kw, sw).reshape(n * ho * wo, -1)
        flat_weight = weight.reshape(filters, channels * kh * kw)
    else:  # (N, Ho, Wo, kh * kw, C): the window at each kernel offset, stacked
        shifted = [nhwc[:, i : i + (ho - 1) * sh + 1 : sh, j : j + (wo - 1) * sw + 1 : sw]
                   for i in range(kh) for j in range(kw)]  # fmt: skip
        rows = torch.stack(shifted, dim=3).reshape(n * ho * wo, -1)
        flat_weight = weight.permute(0, 2, 3, 1).reshape(filters, kh * kw * channels)
    y = padded_linear(rows, flat_weight, bias, ALIGN)
    return y.view(n, ho, wo, filters).permute(0, 3, 1, 2)


def _output_size(x: Tensor, weight: Tensor, strides: tuple[int, ...]) -> tuple[int, int]:
    """Output height and width of an unpadded, undilated convolution."""
    (h, w), (kh, kw) = x.shape[2:], weight.shape[2:]
    return (h - kh) // strides[0] + 1, (w - kw) // strides[1] + 1
