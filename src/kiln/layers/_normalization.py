"""Normalization layers: BatchNorm (over the batch), LayerNorm (over each sample's features) and
Normalization (a fixed per-channel mean and variance, Keras's preprocessing layer)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

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


class Normalization(Layer):
    """Standardizes with a fixed mean and variance: ``(x - mean) / sqrt(variance)``.

    Keras's preprocessing layer, channels-first: with the default ``axis=1`` each channel of
    (N, C, H, W) images (or each feature of (N, F) rows) has its own mean and variance. Give
    them as numbers or per-channel lists, ``std=`` instead of ``variance`` for constants such as
    ImageNet's (``mean=[0.485, 0.456, 0.406], std=[0.229, 0.224, 0.225]``), or leave both out
    and call ``adapt(data)``; until then the layer is the identity, as in Keras. They are
    buffers (saved, not trained). As Keras, the divisor is ``max(sqrt(variance), 1e-7)``.
    Integer inputs (uint8 images) are converted to float32 first.
    """

    mean: Tensor
    variance: Tensor

    def __init__(
        self,
        mean: float | Sequence[float] | Tensor | None = None,
        variance: float | Sequence[float] | Tensor | None = None,
        std: float | Sequence[float] | Tensor | None = None,
        axis: int = 1,
        name: str | None = None,
    ) -> None:
        super().__init__(name=name)
        if (std is not None and variance is not None) or (mean is None) != (
            variance is None and std is None
        ):
            raise ValueError(
                "Normalization expects mean with one of variance or std, or none of them (then "
                f"call adapt(data)). Received: mean={mean!r}, variance={variance!r}, std={std!r}"
            )
        if isinstance(axis, bool) or not isinstance(axis, int) or axis == 0:
            raise ValueError(
                f"Normalization expects axis to be an int other than 0 (the batch axis). "
                f"Received: axis={axis!r}"
            )
        self.axis = axis
        self._given: tuple[Tensor, Tensor] | None = None
        if mean is not None:
            spread = _vector(std if variance is None else variance)
            self._given = _vector(mean), spread**2 if variance is None else spread
        for key, value in (("mean", mean), ("variance", variance), ("std", std)):
            if hasattr(value, "tolist"):  # tensors and arrays: the config holds JSON
                self._config[key] = value.tolist()  # type: ignore[union-attr]

    def build(self, input_shape: tuple[int, ...]) -> None:
        n = self.num_features = input_shape[self._resolve(input_shape)]
        mean, variance = self._given or (torch.zeros(1), torch.ones(1))
        for key, value in (("mean", mean), ("variance", variance)):
            if value.numel() not in (1, n):
                raise ValueError(
                    f"Normalization got {value.numel()} {key} values for an input of shape "
                    f"{tuple(input_shape)} with {n} features on axis {self.axis}: give one "
                    f"value or {n}."
                )
            self.register_buffer(key, value.expand(n).clone())

    def _resolve(self, shape: Sequence[int]) -> int:
        if not -len(shape) <= self.axis < len(shape) or self.axis % len(shape) == 0:
            raise ValueError(
                f"Normalization got axis={self.axis}, which is not a non-batch axis of the input "
                f"of shape {tuple(shape)}."
            )
        return self.axis % len(shape)

    def forward(self, x: Tensor) -> Tensor:
        axis = self._resolve(x.shape)
        expect_size(self, x.shape, axis, self.num_features, "features")
        shape = [-1 if d == axis else 1 for d in range(x.dim())]
        x = x if x.is_floating_point() else x.float()
        return (x - self.mean.view(shape)) / self.variance.sqrt().clamp_min(1e-7).view(shape)

    @torch.no_grad()
    def adapt(self, data: Tensor | Iterable[Tensor], batch_size: int = 256) -> None:
        """Set mean and variance (the population variance) from ``data``: a tensor of samples,
        or an iterable of batches (such as a DataLoader yielding tensors)."""
        if self._given is not None:
            raise ValueError(
                "Normalization was given mean and variance, so adapt() would overwrite them. "
                "Create it as Normalization(axis=...) to compute them from data."
            )
        batches = data.split(batch_size) if isinstance(data, Tensor) else data
        stats = None  # per feature: count, sum, sum of squares (float64)
        for batch in batches:
            if not self.built:
                self._build_from((batch,))
            axis = self._resolve(batch.shape)
            expect_size(self, batch.shape, axis, self.num_features, "features")
            flat = batch.movedim(axis, 0).reshape(self.num_features, -1).double()
            count = flat.new_full((self.num_features,), flat.shape[1])
            batch_stats = torch.stack([count, flat.sum(1), (flat * flat).sum(1)])
            stats = batch_stats if stats is None else stats + batch_stats.to(stats.device)
        if stats is None or not stats[0, 0]:
            raise ValueError("Normalization.adapt() received no samples.")
        count, sums, squares = stats
        mean = sums / count
        self.mean.copy_(mean)
        self.variance.copy_((squares / count - mean * mean).clamp_min(0))


def _vector(value: float | Sequence[float] | Tensor | None) -> Tensor:
    return torch.as_tensor(value, dtype=torch.float32).flatten().clone()
