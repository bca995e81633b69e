"""Embedding: integer indices of any shape -> vectors, (*shape) -> (*shape, output_dim)."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from kiln.layers import _initializers as initializers
from kiln.layers._base import Layer
from kiln.layers._config import serialize_callables
from kiln.layers._validate import positive_int


class Embedding(Layer):
    """A lookup table ``weight`` of shape (input_dim, output_dim), nn.Embedding's key and shape.

    The default initializer is Keras's "uniform", U(-0.05, 0.05); "torch" gives nn.Embedding's
    N(0, 1). Indices must be integers in [0, input_dim). The range is not checked on every call,
    since that would wait for the device: on CPU an index out of range raises an IndexError
    naming ``input_dim``; on CUDA it triggers a device-side assert.
    """

    def __init__(
        self,
        input_dim: int,
        output_dim: int,
        embeddings_initializer: initializers.InitializerLike = "uniform",
        name: str | None = None,
    ) -> None:
        super().__init__(name=name)
        self.input_dim = positive_int("Embedding", "input_dim", input_dim)
        self.output_dim = positive_int("Embedding", "output_dim", output_dim)
        self.embeddings_initializer = initializers.check(embeddings_initializer)

    def build(self, input_shape: tuple[int, ...]) -> None:
        self.weight = nn.Parameter(torch.empty(self.input_dim, self.output_dim))
        initializers.initialize(self.weight, self.embeddings_initializer, nn.init.normal_)

    def forward(self, x: Tensor) -> Tensor:
        if x.is_floating_point() or x.is_complex() or x.dtype == torch.bool:
            raise ValueError(
                f"Embedding expects integer indices, received a tensor of dtype {x.dtype} and "
                f"shape {tuple(x.shape)}. Convert with x.long(), or declare the model input as "
                "Input(shape, dtype='int64')."
            )
        try:
            return F.embedding(x, self.weight)
        except IndexError as e:  # raised on CPU only; CUDA asserts asynchronously
            raise IndexError(
                f"Embedding got an index outside [0, {self.input_dim}) (input_dim="
                f"{self.input_dim}) in an input of shape {tuple(x.shape)}."
            ) from e

    def get_config(self) -> dict[str, Any]:
        return serialize_callables(super().get_config())
