"""Convolutions, channels-first: Conv1D on (N, C, L); Conv2D, Conv2DTranspose on (N, C, H, W)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from kiln.layers import _activations as activations
from kiln.layers import _initializers as initializers
from kiln.layers import _padding as padding_
from kiln.layers._base import Layer
from kiln.layers._compiled_step import in_trainer_step
from kiln.layers._config import serialize_callables
from kiln.layers._conv_matmul import conv2d_as_matmul, use_matmul
from kiln.layers._validate import CHANNEL_HINT, expect_rank, expect_size, int_tuple, positive_int

IntOrTuple = int | tuple[int, ...]


class _Conv(Layer):
    """Shared by Conv1D and Conv2D; ``rank`` is the number of spatial axes.

    Parameters ``weight`` (filters, in_channels // groups, *kernel_size) and ``bias`` (filters)
    match nn.Conv1d/nn.Conv2d's names and shapes. Initializers default to Keras's (glorot_uniform,
    zeros); "torch" gives PyTorch's. softmax as ``activation`` acts on the channel axis 1.
    """

    rank: ClassVar[int]
    layout: ClassVar[str]
    padding_modes: ClassVar[tuple[str, ...]] = ("valid", "same")
    conv: ClassVar[Callable[..., Tensor]]
    # small 2-D convolutions as a matrix product in the step kiln's Trainer compiles on GPUs
    # (_conv_matmul; LeNet-5: 0.105 against 0.136 s/epoch with cuDNN, H100, 2026-11-28);
    # False keeps cuDNN
    matmul_when_compiled: ClassVar[bool] = True

    def __init__(
        self,
        filters: int,
        kernel_size: IntOrTuple,
        strides: IntOrTuple = 1,
        padding: padding_.PaddingLike = "valid",
        dilation_rate: IntOrTuple = 1,
        groups: int = 1,
        activation: activations.ActivationLike = None,
        use_bias: bool = True,
        kernel_initializer: initializers.InitializerLike = "glorot_uniform",
        bias_initializer: initializers.InitializerLike = "zeros",
        name: str | None = None,
    ) -> None:
        super().__init__(name=name)
        owner, n = type(self).__name__, self.rank
        self.filters = positive_int(owner, "filters", filters)
        self.kernel_size = int_tuple(owner, "kernel_size", kernel_size, n)
        self.strides = int_tuple(owner, "strides", strides, n)
        self.padding = padding_.normalize(owner, padding, n, self.padding_modes)
        self.dilation_rate = int_tuple(owner, "dilation_rate", dilation_rate, n)
        self.groups = positive_int(owner, "groups", groups)
        if filters % groups:
            raise ValueError(
                f"{owner} expects filters to be divisible by groups. "
                f"Received: filters={filters}, groups={groups}"
            )
        self.activation = activations.get(activation, axis=1)
        self.use_bias = use_bias
        self.kernel_initializer = initializers.check(kernel_initializer)
        self.bias_initializer = initializers.check(bias_initializer)

    def build(self, input_shape: tuple[int, ...]) -> None:
        self._check_rank(input_shape)
        self.in_channels = input_shape[1]
        if self.in_channels % self.groups:
            raise ValueError(
                f"{type(self).__name__} expects input channels divisible by groups={self.groups}, "
                f"received an input of shape {tuple(input_shape)}."
            )
        self._make_weights(self._weight_shape())

    def _weight_shape(self) -> tuple[int, ...]:
        return (self.filters, self.in_channels // self.groups, *self.kernel_size)

    def _make_weights(self, shape: tuple[int, ...]) -> None:
        self.weight = nn.Parameter(torch.empty(shape))
        self.bias = nn.Parameter(torch.empty(self.filters)) if self.use_bias else None
        default = initializers.torch_uniform(initializers.fans(shape)[0])
        initializers.initialize(self.weight, self.kernel_initializer, default)
        if self.bias is not None:
            initializers.initialize(self.bias, self.bias_initializer, default)

    def _check_rank(self, shape: tuple[int, ...] | torch.Size) -> None:
        hint = CHANNEL_HINT if len(shape) == self.rank + 1 else ""
        expect_rank(self, shape, (self.rank + 2,), self.layout, hint)

    def forward(self, x: Tensor) -> Tensor:
        self._check_rank(x.shape)
        expect_size(self, x.shape, 1, self.in_channels, "channels")
        pads = padding_.pads_for(
            x, self.padding, self.kernel_size, self.strides, self.dilation_rate
        )
        x, sym = padding_.apply(x, pads)
        if (y := self._as_matmul(x, sym)) is not None:
            return self.activation(y)
        y = type(self).conv(
            x, self.weight, self.bias, self.strides, sym, self.dilation_rate, self.groups
        )
        return self.activation(y)

    def _as_matmul(self, x: Tensor, sym: tuple[int, ...]) -> Tensor | None:
        """The convolution as a matrix product when it is small and kiln's Trainer is compiling
        its step (see ``_conv_matmul``); None: run ``conv``."""
        # only in a kiln Trainer's compiled step (not torch.compiler's is_exporting(): torch
        # 2.11's Dynamo answers True to it in any trace)
        if not (self.rank == 2 and self.matmul_when_compiled and in_trainer_step(x)):
            return None
        padded = F.pad(x, padding_.flat([(p, p) for p in sym])) if any(sym) else x
        if not use_matmul(padded, self.weight, self.strides, self.dilation_rate, self.groups):
            return None
        return conv2d_as_matmul(padded, self.weight, self.bias, self.strides)

    def get_config(self) -> dict[str, Any]:
        return serialize_callables(super().get_config())


class Conv1D(_Conv):
    """1-D convolution over (batch, channels, length); padding may also be "causal" (left only)."""

    rank = 1
    layout = "(batch, channels, length)"
    padding_modes = ("valid", "same", "causal")
    conv = F.conv1d


class Conv2D(_Conv):
    """2-D convolution over (batch, channels, height, width); "same" padding as TensorFlow's."""

    rank = 2
    layout = "(batch, channels, height, width)"
    conv = F.conv2d


class Conv2DTranspose(_Conv):
    """Transposed 2-D convolution with Keras's output sizes, per spatial axis:

    - "valid": ``(in - 1) * stride + k`` when k >= stride, else ``in * stride``;
    - "same": ``in * stride``;
    - with ``output_padding`` p: ``(in - 1) * stride + k - 2 * pad + p``, pad = 0 ("valid") or
      k // 2 ("same");

    where k is the dilated kernel size. Values match TensorFlow's conv2d_transpose, the gradient
    of a Conv2D with the same padding. ``weight`` has nn.ConvTranspose2d's shape,
    (in_channels, filters // groups, *kernel_size).
    """

    rank = 2
    layout = "(batch, channels, height, width)"

    def __init__(
        self,
        filters: int,
        kernel_size: IntOrTuple,
        strides: IntOrTuple = 1,
        padding: str = "valid",
        output_padding: IntOrTuple | None = None,
        dilation_rate: IntOrTuple = 1,
        groups: int = 1,
        activation: activations.ActivationLike = None,
        use_bias: bool = True,
        kernel_initializer: initializers.InitializerLike = "glorot_uniform",
        bias_initializer: initializers.InitializerLike = "zeros",
        name: str | None = None,
    ) -> None:
        super().__init__(
            filters,
            kernel_size,
            strides,
            padding,
            dilation_rate,
            groups,
            activation,
            use_bias,
            kernel_initializer,
            bias_initializer,
            name,
        )
        if not isinstance(self.padding, str):
            raise ValueError(
                f"Conv2DTranspose expects padding 'valid' or 'same'. Received: padding={padding!r}"
            )
        self.output_padding = None
        if output_padding is not None:
            self.output_padding = int_tuple(
                "Conv2DTranspose", "output_padding", output_padding, 2, 0
            )
            limits = [max(s, d) for s, d in zip(self.strides, self.dilation_rate)]
            if any(p >= m for p, m in zip(self.output_padding, limits)):
                raise ValueError(
                    "Conv2DTranspose expects output_padding smaller than the stride (or dilation). "
                    f"Received: output_padding={output_padding!r}, strides={strides!r}"
                )

    def _weight_shape(self) -> tuple[int, ...]:
        return (self.in_channels, self.filters // self.groups, *self.kernel_size)

    def output_size(self, size: int, axis: int) -> int:
        """Keras's output length along spatial ``axis`` (0 or 1) for an input of ``size``."""
        k = (self.kernel_size[axis] - 1) * self.dilation_rate[axis] + 1
        s = self.strides[axis]
        if self.output_padding is None:
            return size * s + (max(k - s, 0) if self.padding == "valid" else 0)
        pad = 0 if self.padding == "valid" else k // 2
        return (size - 1) * s + k - 2 * pad + self.output_padding[axis]

    def forward(self, x: Tensor) -> Tensor:
        self._check_rank(x.shape)
        expect_size(self, x.shape, 1, self.in_channels, "channels")
        pads, extra, crop = [], [], []
        for axis, size in enumerate(x.shape[2:]):
            # Full transposed conv length minus the target = what TF's "same" gradient crops,
            # fewer rows at the start than at the end; a negative excess is appended as zeros.
            k = (self.kernel_size[axis] - 1) * self.dilation_rate[axis] + 1
            excess = (size - 1) * self.strides[axis] + k - self.output_size(size, axis)
            before = max(excess, 0) // 2
            pads.append(before)
            extra.append(max(-excess, 0))
            crop.append(max(excess, 0) - 2 * before)
        y = F.conv_transpose2d(
            x, self.weight, self.bias, self.strides, pads, extra, self.groups, self.dilation_rate
        )
        if any(crop):
            y = y[..., : y.shape[2] - crop[0], : y.shape[3] - crop[1]]
        return self.activation(y)
