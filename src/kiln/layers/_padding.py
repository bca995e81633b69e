"""Padding modes shared by convolutions and pooling: "valid", "same", "causal" or explicit ints.

"same" follows TensorFlow: the output has ceil(size / stride) positions, and the padding this
needs is computed from the input size on every call; when it is odd, the extra row/column goes
at the end (bottom/right). Symmetric cases are handed to the op's own ``padding`` argument so
that no padded copy of the input is made.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch.nn.functional as F
from torch import Tensor

from kiln.layers._validate import int_tuple

PaddingLike = str | int | tuple[int, ...]


def normalize(owner: str, padding: Any, rank: int, modes: Sequence[str]) -> str | tuple[int, ...]:
    """A mode name from ``modes``, or explicit symmetric padding as ``rank`` non-negative ints."""
    if isinstance(padding, str):
        if padding in modes:
            return padding
    else:
        try:
            return int_tuple(owner, "padding", padding, rank, minimum=0)
        except ValueError:
            pass
    valid = ", ".join(repr(m) for m in modes)
    raise ValueError(
        f"{owner} expects padding to be one of {valid}, or an int or {rank} ints >= 0 "
        f"(symmetric padding per spatial axis). Received: padding={padding!r}"
    )


def same_pads(size: int, kernel: int, stride: int, dilation: int = 1) -> tuple[int, int]:
    """TensorFlow's "same" padding (before, after) for one spatial axis."""
    out = -(-size // stride)
    total = max((out - 1) * stride + (kernel - 1) * dilation + 1 - size, 0)
    return total // 2, total - total // 2


def pads_for(
    x: Tensor,
    padding: str | tuple[int, ...],
    kernel: Sequence[int],
    strides: Sequence[int],
    dilation: Sequence[int],
) -> list[tuple[int, int]]:
    """(before, after) per spatial axis of ``x`` (channels-first, spatial axes last)."""
    if isinstance(padding, tuple):
        return [(p, p) for p in padding]
    if padding == "valid":
        return [(0, 0)] * len(kernel)
    if padding == "causal":
        return [((k - 1) * d, 0) for k, d in zip(kernel, dilation)]
    sizes = x.shape[-len(kernel) :]
    return [same_pads(n, k, s, d) for n, k, s, d in zip(sizes, kernel, strides, dilation)]


def apply(
    x: Tensor, pads: list[tuple[int, int]], value: float = 0.0
) -> tuple[Tensor, tuple[int, ...]]:
    """(input, symmetric padding for the op): pads ``x`` explicitly only when asymmetric."""
    if all(a == b for a, b in pads):
        return x, tuple(a for a, _ in pads)
    return F.pad(x, flat(pads), value=value), (0,) * len(pads)


def flat(pads: list[tuple[int, int]]) -> list[int]:
    """``F.pad``'s order: last axis first."""
    return [p for before_after in reversed(pads) for p in before_after]
