"""What layers may do differently inside the training step kiln's Trainer compiles.

A few layers compute their result in a shape that is faster on GPUs but not what a model the
user compiles, exports or serves should contain (``_conv_matmul``: small convolutions as
matrix products; ``Dense.align_when_compiled``: products padded to aligned sizes). They do so
only while the Trainer traces its own step: ``TRAINER_ACTIVE`` is set by the Trainer's
``scoped_settings`` around fit/evaluate/predict, and torch.compile must be tracing (eager code
runs each op as launched: there these shapes would only add kernels).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

TRAINER_ACTIVE = False
DEVICE_TYPES = ("cuda",)  # measured there; Inductor's CPU code has not been


def in_trainer_step(x: Tensor) -> bool:
    """Whether the Trainer is compiling its step now, with ``x`` on a measured device.
    ``is_dynamo_compiling``, not ``is_compiling``: newer torch (2.13) holds the latter True for
    the whole process while Dynamo compiles, so eager code in another thread (the training
    that runs while the step compiles behind it, ``train._compile_behind``) would see it."""
    return TRAINER_ACTIVE and torch.compiler.is_dynamo_compiling() and x.device.type in DEVICE_TYPES


def padded_linear(x: Tensor, weight: Tensor, bias: Tensor | None, multiple: int) -> Tensor:
    """``F.linear(x, weight, bias)`` with its inner size (x's last axis, weight's columns) and
    outer size (weight's rows, the bias) padded with zeros to multiples of ``multiple``, and the
    padding dropped from the result: the same sums. cuBLAS has kernels for aligned 16-bit rows
    (sizes a multiple of 8) that are faster than its unaligned ones for small products."""
    units, depth = weight.shape
    if pad := -depth % multiple:  # zero columns times zero weights
        x, weight = F.pad(x, (0, pad)), F.pad(weight, (0, pad))
    if pad := -units % multiple:  # zero units, dropped from the output
        weight = F.pad(weight, (0, 0, 0, pad))
        bias = F.pad(bias, (0, pad)) if bias is not None else None
        return F.linear(x, weight, bias)[..., :units]
    return F.linear(x, weight, bias)
