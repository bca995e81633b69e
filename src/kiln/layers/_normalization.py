"""Normalization layers: BatchNorm (over the batch) and LayerNorm (over each sample's features)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from kiln.layers._base import Layer
from kiln.layers._validate import expect_rank, expect_size


class BatchNorm(Layer):
    """Batch normalization over every axis but ``axis`` (the channel axis 1 by default).

    Works on inputs of rank 2 to 5 (nn.BatchNorm1d/2d/3d), and has their state-dict keys:
    ``weight``, ``bias``, ``running_mean``, ``running_var``, ``num_batches_tracked``.

    ``momentum`` follows PyTorch: ``running = (1 - momentum) * running + momentum * batch_stat``
    (the running variance uses the unbiased batch variance). Keras's ``momentum`` is the weight
    of the old value, so Keras's momentum=0.99 is momentum=0.01 here. Defaults are PyTorch's
    (momentum=0.1, eps=1e-5; Keras: 0.99 and 1e-3).
    """

    running_mean: Tensor
    running_var: Tensor
    num_batches_tracked: Tensor

    def __init__(
        self, momentum: float = 0.1, eps: float = 1e-5, axis: int = 1, name: str | None = None
    ) -> None:
        super().__init__(name=name)
        if (
            isinstance(momentum, bool)
            or not isinstance(momentum, (int, float))
            or not (0 <= momentum <= 1)
        ):
            raise ValueError(
                "BatchNorm expects momentum in [0, 1] (PyTorch convention: the weight of the new "
                "batch statistic; Keras's momentum m is 1 - m here). "
                f"Received: momentum={momentum!r}"
            )
        _check_eps("BatchNorm", eps)
        if isinstance(axis, bool) or not isinstance(axis, int) or axis == 0:
            raise ValueError(
                f"BatchNorm expects axis to be an int other than 0 (the batch axis). "
                f"Received: axis={axis!r}"
            )
        self.momentum, self.eps, self.axis = float(momentum), float(eps), axis

    def build(self, input_shape: tuple[int, ...]) -> None:
        self._check(input_shape)
        n = self.num_features = input_shape[self.axis]
        self.weight = nn.Parameter(torch.ones(n))
        self.bias = nn.Parameter(torch.zeros(n))
        self.register_buffer("running_mean", torch.zeros(n))
        self.register_buffer("running_var", torch.ones(n))
        self.register_buffer("num_batches_tracked", torch.tensor(0, dtype=torch.long))

    def _check(self, shape: Sequence[int]) -> None:
        expect_rank(self, shape, (2, 3, 4, 5), "(batch, channels, *spatial) of rank 2 to 5")
        if not -len(shape) <= self.axis < len(shape) or self.axis % len(shape) == 0:
            raise ValueError(
                f"BatchNorm got axis={self.axis}, which is not a non-batch axis of the input of "
                f"shape {tuple(shape)}."
            )

    def forward(self, x: Tensor) -> Tensor:
        self._check(x.shape)
        expect_size(self, x.shape, self.axis, self.num_features, "features")
        moved = self.axis % x.dim() != 1
        if moved:
            x = x.movedim(self.axis, 1)
        if self.training:
            self.num_batches_tracked.add_(1)
        y = F.batch_norm(
            x,
            self.running_mean,
            self.running_var,
            self.weight,
            self.bias,
            self.training,
            self.momentum,
            self.eps,
        )
        return y.movedim(1, self.axis) if moved else y


class LayerNorm(Layer):
    """Normalizes each sample over ``axis`` (an int or a list of axes; default the last).

    With trailing axes this is nn.LayerNorm (same ``weight``/``bias`` keys and shapes, of the
    normalized axes' sizes); other axes, such as the channel axis 1 of an image, are moved to
    the end and back. ``eps`` is PyTorch's default (Keras: 1e-3).
    """

    def __init__(
        self, eps: float = 1e-5, axis: int | Sequence[int] = -1, name: str | None = None
    ) -> None:
        super().__init__(name=name)
        _check_eps("LayerNorm", eps)
        axes = [axis] if isinstance(axis, int) else list(axis)
        if not axes or any(isinstance(a, bool) or not isinstance(a, int) or a == 0 for a in axes):
            raise ValueError(
                "LayerNorm expects axis to be an int or a list of ints, none of them 0 (the batch "
                f"axis). Received: axis={axis!r}"
            )
        self.eps, self.axes = float(eps), axes

    def _resolve(self, shape: Sequence[int]) -> list[int]:
        rank = len(shape)
        axes = sorted(a % rank for a in self.axes if -rank <= a < rank)
        if len(axes) != len(self.axes) or len(set(axes)) != len(axes) or 0 in axes:
            raise ValueError(
                f"LayerNorm got axis={self.axes}, which are not distinct non-batch axes of the "
                f"input of shape {tuple(shape)}."
            )
        return axes

    def build(self, input_shape: tuple[int, ...]) -> None:
        self.normalized_shape = tuple(input_shape[a] for a in self._resolve(input_shape))
        self.weight = nn.Parameter(torch.ones(self.normalized_shape))
        self.bias = nn.Parameter(torch.zeros(self.normalized_shape))

    def forward(self, x: Tensor) -> Tensor:
        axes = self._resolve(x.shape)
        trailing = list(range(x.dim() - len(axes), x.dim()))
        if tuple(x.shape[a] for a in axes) != self.normalized_shape:
            raise ValueError(
                f"LayerNorm was built for axes {self.axes} of sizes {self.normalized_shape}, "
                f"received an input of shape {tuple(x.shape)}."
            )
        if axes == trailing:
            return F.layer_norm(x, self.normalized_shape, self.weight, self.bias, self.eps)
        y = F.layer_norm(
            x.movedim(axes, trailing), self.normalized_shape, self.weight, self.bias, self.eps
        )
        return y.movedim(trailing, axes)


def _check_eps(owner: str, eps: float) -> None:
    if isinstance(eps, bool) or not isinstance(eps, (int, float)) or eps <= 0:
        raise ValueError(f"{owner} expects eps to be a positive number. Received: eps={eps!r}")
