"""``kiln.Sequential``: a plain stack of layers (or any torch modules)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from torch import nn

from kiln.layers._symbolic import SymbolicTensor
from kiln.model._graph import InputSpec
from kiln.model._model import Model


class Sequential(Model):
    """Layers applied one after the other: ``Sequential([L.Dense(64, activation="relu"), ...])``.

    Layers may come as one list (Keras), as arguments (``nn.Sequential``), or as several lists,
    one per block; nested lists are flattened. Start with ``kiln.Input(shape)`` to build the
    weights at once (and get ``summary()`` before training); otherwise they are built from the
    first batch ``fit`` sees.
    """

    def __init__(
        self, *layers: nn.Module | SymbolicTensor | Iterable[Any], name: str | None = None
    ) -> None:
        super().__init__(name=name)
        self._input_spec: InputSpec | None = None
        for layer in _flatten(layers):
            self.add(layer)

    def add(self, layer: nn.Module | SymbolicTensor) -> None:
        if isinstance(layer, SymbolicTensor):
            if len(self) or self._input_spec is not None:
                raise ValueError("kiln.Input(...) can only be the first entry of a Sequential.")
            self.build(layer.shape[1:], dtype=layer.dtype)
            return
        if not isinstance(layer, nn.Module):
            raise TypeError(
                "Sequential takes kiln layers or torch.nn.Module instances; received "
                f"{layer!r} of type {type(layer).__name__}."
            )
        self.add_module(str(len(self)), layer)
        if self._input_spec is not None:
            self.build(self._input_spec.shape)

    def build(self, input_shape: Any, dtype: torch.dtype | str | None = None) -> None:
        shape = tuple(input_shape)
        if dtype is None:
            dtype = self._input_spec.dtype if self._input_spec is not None else "float32"
        self._input_spec = InputSpec(
            "input", shape, dtype if isinstance(dtype, str) else str(dtype)[6:]
        )
        if len(self):
            super().build(shape)

    def forward(self, x: Any) -> Any:
        if self._input_spec is not None:
            self._input_spec.check(x)
        for module in self.children():
            x = module(x)
        return x

    @property
    def input_specs(self) -> list[InputSpec] | None:
        return [self._input_spec] if self._input_spec is not None else None

    @property
    def layers(self) -> list[nn.Module]:
        return list(self._modules.values())  # type: ignore[arg-type]

    def __len__(self) -> int:
        return len(self._modules)

    def __getitem__(self, index: int) -> nn.Module:
        return self.layers[index]

    def get_config(self) -> dict[str, Any]:
        from kiln.model._serialize import module_config

        spec = self._input_spec
        return {
            "name": self.name,
            "input": None if spec is None else {"shape": list(spec.shape), "dtype": spec.dtype},
            "layers": [module_config(m) for m in self.layers],
        }

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> Sequential:
        from kiln.model._serialize import module_from_config

        model = cls(
            [module_from_config(spec) for spec in config["layers"]], name=config.get("name")
        )
        if config.get("input") is not None:
            model.build(tuple(config["input"]["shape"]), dtype=config["input"]["dtype"])
        return model


def _flatten(items: Any) -> list[Any]:
    if isinstance(items, (list, tuple)):
        return [x for item in items for x in _flatten(item)]
    return [items]
