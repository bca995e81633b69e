"""2-D pooling over (batch, channels, height, width): MaxPool2D, AvgPool2D, GlobalAvgPool2D."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

from kiln.layers import _padding as padding_
from kiln.layers._base import Layer
from kiln.layers._validate import CHANNEL_HINT, expect_rank, int_tuple

_LAYOUT = "(batch, channels, height, width)"


class _Pool2D(Layer):
    def __init__(
        self,
        pool_size: int | tuple[int, int] = 2,
        strides: int | tuple[int, int] | None = None,
        padding: padding_.PaddingLike = "valid",
        name: str | None = None,
    ) -> None:
        super().__init__(name=name)
        owner = type(self).__name__
        self.pool_size = int_tuple(owner, "pool_size", pool_size, 2)
        self.strides = (
            self.pool_size if strides is None else int_tuple(owner, "strides", strides, 2)
        )
        self.padding = padding_.normalize(owner, padding, 2, ("valid", "same"))
        if isinstance(self.padding, tuple) and any(
            2 * p > k for p, k in zip(self.padding, self.pool_size)
        ):
            raise ValueError(
                f"{owner} expects explicit padding of at most half the pool size, so that every "
                f"window holds a real cell. Received: padding={padding!r}, "
                f"pool_size={pool_size!r}"
            )

    def _pads(self, x: Tensor) -> list[tuple[int, int]]:
        _check(self, x)
        return padding_.pads_for(x, self.padding, self.pool_size, self.strides, (1, 1))


class MaxPool2D(_Pool2D):
    """Max over ``pool_size`` windows; ``strides`` default to ``pool_size``.

    "same" pads as TensorFlow (output ceil(size / stride)); an int or two ints pad both sides
    as nn.MaxPool2d's ``padding`` (e.g. ResNet's ``MaxPool2D(3, 2, padding=1)``). Padded cells
    never win the max.
    """

    def forward(self, x: Tensor) -> Tensor:
        x, sym = padding_.apply(x, self._pads(x), value=float("-inf"))
        return F.max_pool2d(x, self.pool_size, self.strides, sym)


class AvgPool2D(_Pool2D):
    """Mean over ``pool_size`` windows; ``strides`` default to ``pool_size``.

    "same" pads as TensorFlow, ints pad both sides (nn.AvgPool2d's ``padding``); either way
    only the real (unpadded) cells of a window are averaged, as TensorFlow does
    (``count_include_pad=False``).
    """

    def forward(self, x: Tensor) -> Tensor:
        pads = self._pads(x)
        if all(a == b for a, b in pads):
            sym = tuple(a for a, _ in pads)
            return F.avg_pool2d(x, self.pool_size, self.strides, sym, count_include_pad=False)
        sums = F.avg_pool2d(
            F.pad(x, padding_.flat(pads)), self.pool_size, self.strides, divisor_override=1
        )
        ones = F.pad(x.new_ones((1, 1, *x.shape[2:])), padding_.flat(pads))
        counts = F.avg_pool2d(ones, self.pool_size, self.strides, divisor_override=1)
        return sums / counts


class GlobalAvgPool2D(Layer):
    """Mean over height and width: (batch, channels, H, W) -> (batch, channels), or
    (batch, channels, 1, 1) with ``keepdims=True``."""

    def __init__(self, keepdims: bool = False, name: str | None = None) -> None:
        super().__init__(name=name)
        self.keepdims = keepdims

    def forward(self, x: Tensor) -> Tensor:
        _check(self, x)
        return x.mean(dim=(2, 3), keepdim=self.keepdims)


def _check(layer: Layer, x: Tensor) -> None:
    expect_rank(layer, x.shape, (4,), _LAYOUT, CHANNEL_HINT if x.dim() == 3 else "")
