"""Layers that combine several tensors: Add, Concatenate. Call them on a list, ``Add()([a, b])``."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from kiln.layers._base import Layer


def _tensors(layer: Layer, inputs: tuple[Tensor | Sequence[Tensor], ...]) -> list[Tensor]:
    """Accept ``layer([a, b])`` (Keras) and ``layer(a, b)``."""
    flat = list(inputs[0]) if len(inputs) == 1 and isinstance(inputs[0], (list, tuple)) else inputs
    if not flat or not all(isinstance(t, Tensor) for t in flat):
        raise ValueError(
            f"{type(layer).__name__} expects a list of tensors, e.g. {type(layer).__name__}()"
            f"([a, b]). Received: {[type(t).__name__ for t in flat]}"
        )
    return list(flat)  # type: ignore[arg-type]


def _shapes(tensors: list[Tensor]) -> list[tuple[int, ...]]:
    return [tuple(t.shape) for t in tensors]


class Add(Layer):
    """Elementwise sum of tensors of the same shape (or shapes that broadcast, as in torch)."""

    def forward(self, *inputs: Tensor | Sequence[Tensor]) -> Tensor:
        tensors = _tensors(self, inputs)
        try:
            torch.broadcast_shapes(*(t.shape for t in tensors))
        except RuntimeError as e:
            raise ValueError(
                f"Add expects inputs of the same shape (or broadcastable shapes). "
                f"Received: shapes {_shapes(tensors)}"
            ) from e
        out = tensors[0]
        for t in tensors[1:]:
            out = out + t
        return out


class Concatenate(Layer):
    """Joins tensors along ``axis``; the default 1 is the channel axis of channels-first images
    (and the feature axis of (batch, features) inputs). For sequences (batch, time, features)
    use ``axis=-1`` to join features."""

    def __init__(self, axis: int = 1, name: str | None = None) -> None:
        super().__init__(name=name)
        if isinstance(axis, bool) or not isinstance(axis, int):
            raise ValueError(f"Concatenate expects axis to be an int. Received: axis={axis!r}")
        self.axis = axis

    def forward(self, *inputs: Tensor | Sequence[Tensor]) -> Tensor:
        tensors = _tensors(self, inputs)
        shapes = _shapes(tensors)
        rank = len(shapes[0])
        ok = -rank <= self.axis < rank and all(len(s) == rank for s in shapes)
        if ok:
            axis = self.axis % rank
            others = {s[:axis] + s[axis + 1 :] for s in shapes}
            ok = len(others) == 1 and axis != 0
        if not ok:
            raise ValueError(
                f"Concatenate expects inputs of equal rank whose shapes match except along "
                f"axis={self.axis} (not the batch axis). Received: shapes {shapes}"
            )
        return torch.cat(tensors, dim=self.axis)
