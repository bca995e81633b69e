"""Core layers: Dense, Activation, Dropout, Flatten, Reshape."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from kiln.layers import _activations as activations
from kiln.layers import _initializers as initializers
from kiln.layers._base import Layer
from kiln.layers._compiled_step import in_trainer_step, padded_linear
from kiln.layers._config import serialize_callables
from kiln.layers._validate import expect_rank, expect_size, fraction, positive_int

_ANY_RANK_FROM_2 = range(2, 64)


class Dense(Layer):
    """``activation(x @ weight.T + bias)`` on the last axis of inputs of any rank >= 2.

    Parameters ``weight`` (units, in_features) and ``bias`` (units) have nn.Linear's names and
    shapes, so ``nn.Linear.load_state_dict(dense.state_dict())`` works both ways. Initializers
    default to Keras's (glorot_uniform, zeros); ``"torch"`` gives nn.Linear's.
    """

    # In the step kiln's Trainer compiles on a GPU, pad the product's sizes with zeros to
    # multiples of this (``_compiled_step.padded_linear``), so that cuBLAS can use its aligned
    # kernels: LeNet-5's 84 and 10 units are the likely owners of its step's unaligned cuBLAS
    # kernels (align2, 3.5-7.2 us each on an H100, 2026-11-28). Measured, it lost: LeNet-5
    # trained at 0.113 s/epoch padded to 8 against 0.101 unpadded in one call on an H200 (the
    # pads are kernels of their own; 2026-11-28, ``train_speed.py`` row kiln-dense-aligned).
    # 1 pads nothing: the default.
    align_when_compiled: ClassVar[int] = 1

    def __init__(
        self,
        units: int,
        activation: activations.ActivationLike = None,
        use_bias: bool = True,
        kernel_initializer: initializers.InitializerLike = "glorot_uniform",
        bias_initializer: initializers.InitializerLike = "zeros",
        name: str | None = None,
    ) -> None:
        super().__init__(name=name)
        self.units = positive_int("Dense", "units", units)
        self.activation = activations.get(activation, axis=-1)
        self.use_bias = use_bias
        self.kernel_initializer = initializers.check(kernel_initializer)
        self.bias_initializer = initializers.check(bias_initializer)
        self._linear: Callable[[Tensor], Tensor] | None = None

    def build(self, input_shape: tuple[int, ...]) -> None:
        expect_rank(self, input_shape, _ANY_RANK_FROM_2, "(batch, ..., features)")
        self.in_features = input_shape[-1]
        self.weight = nn.Parameter(torch.empty(self.units, self.in_features))
        self.bias = nn.Parameter(torch.empty(self.units)) if self.use_bias else None
        default = initializers.torch_uniform(self.in_features)
        initializers.initialize(self.weight, self.kernel_initializer, default)
        if self.bias is not None:
            initializers.initialize(self.bias, self.bias_initializer, default)

    def forward(self, x: Tensor) -> Tensor:
        expect_rank(self, x.shape, _ANY_RANK_FROM_2, "(batch, ..., features)")
        expect_size(self, x.shape, -1, self.in_features, "features")
        if self._linear is not None:
            return self.activation(self._linear(x))
        if self.align_when_compiled > 1 and in_trainer_step(x):
            return self.activation(
                padded_linear(x, self.weight, self.bias, self.align_when_compiled)
            )
        return self.activation(F.linear(x, self.weight, self.bias))

    def use_linear(self, linear: Callable[[Tensor], Tensor] | None) -> None:
        """Compute ``x @ weight.T + bias`` with ``linear``, a function that reads this layer's
        own parameters (``precision="fp8"`` passes a float8 product); None: ``F.linear``."""
        self._linear = linear

    def get_config(self) -> dict[str, Any]:
        return serialize_callables(super().get_config())


class Activation(Layer):
    """Applies an activation by name or callable; ``axis`` is where softmax normalizes.

    The default ``axis=-1`` is Keras's; after a convolution (channels-first) use ``axis=1``.
    """

    def __init__(
        self, activation: activations.ActivationLike, axis: int = -1, name: str | None = None
    ) -> None:
        super().__init__(name=name)
        self.activation = activations.get(activation, axis=axis)

    def forward(self, x: Tensor) -> Tensor:
        return self.activation(x)

    def get_config(self) -> dict[str, Any]:
        return serialize_callables(super().get_config())


class Dropout(Layer):
    """Zeroes a ``rate`` fraction of elements in training and rescales the rest by 1/(1-rate)."""

    def __init__(self, rate: float, name: str | None = None) -> None:
        super().__init__(name=name)
        self.rate = fraction("Dropout", "rate", rate)

    def forward(self, x: Tensor) -> Tensor:
        return F.dropout(x, self.rate, self.training)


class Flatten(Layer):
    """Flattens each sample: (batch, d1, d2, ...) -> (batch, d1 * d2 * ...).

    A rank-1 input (batch,) becomes (batch, 1).
    """

    def forward(self, x: Tensor) -> Tensor:
        return x.reshape(x.shape[0], math.prod(x.shape[1:]))


class Reshape(Layer):
    """Reshapes each sample to ``target_shape`` (batch axis excluded); one entry may be -1."""

    def __init__(self, target_shape: Sequence[int], name: str | None = None) -> None:
        super().__init__(name=name)
        shape = tuple(target_shape) if isinstance(target_shape, (list, tuple)) else None
        if (
            shape is None
            or any(
                isinstance(d, bool) or not isinstance(d, int) or (d <= 0 and d != -1) for d in shape
            )
            or shape.count(-1) > 1
        ):
            raise ValueError(
                "Reshape expects target_shape to be a tuple of positive ints (per sample, batch "
                f"axis excluded), with at most one -1. Received: target_shape={target_shape!r}"
            )
        self.target_shape = shape

    def forward(self, x: Tensor) -> Tensor:
        return x.reshape(x.shape[0], *self._resolve(tuple(x.shape[1:])))

    def _resolve(self, sample_shape: tuple[int, ...]) -> tuple[int, ...]:
        size = math.prod(sample_shape)
        known = math.prod(d for d in self.target_shape if d != -1)
        if -1 in self.target_shape and known > 0 and size % known == 0:
            return tuple(size // known if d == -1 else d for d in self.target_shape)
        if -1 not in self.target_shape and known == size:
            return self.target_shape
        raise ValueError(
            f"Reshape cannot reshape samples of shape {sample_shape} ({size} values) into "
            f"target_shape {self.target_shape}: the number of values must match. Received: "
            f"input shape {sample_shape} (per sample), target_shape={self.target_shape}"
        )
