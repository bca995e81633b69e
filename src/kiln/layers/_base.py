"""The contract every kiln layer follows: a torch module that makes its weights on first call."""

from __future__ import annotations

import inspect
from typing import Any, ClassVar

import torch
from torch import nn

from kiln.layers._symbolic import SymbolicTensor, symbolic_call


class Layer(nn.Module):
    """A Keras-style layer: a ``torch.nn.Module`` whose weights are created from the first input.

    Subclass contract:

    - ``__init__`` stores hyperparameters only (call ``super().__init__()`` first). The arguments
      it was called with are captured automatically and become the layer's config, so they must
      be JSON values (numbers, strings, bools, None, lists, dicts) for the model to be saved.
    - ``build(input_shape)`` creates parameters and submodules. ``input_shape`` includes the batch
      dimension; a layer called with several tensors gets a list of shapes. Layers without
      weights need not override it.
    - ``forward`` does the math, as in any torch module.

    A layer called on a ``kiln.Input`` (a symbolic tensor) adds itself to a functional graph
    instead of computing.
    """

    registry: ClassVar[dict[str, type[Layer]]] = {}
    _config: dict[str, Any]

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        # classes made on the fly by torch (FSDP2's FSDPDense, ...) are not layers to look up
        if not cls.__name__.startswith("_") and not cls.__module__.startswith("torch."):
            Layer.registry[cls.__name__] = cls

    def __new__(cls, *args: Any, **kwargs: Any) -> Layer:
        self = super().__new__(cls)
        try:
            bound = inspect.signature(cls.__init__).bind(None, *args, **kwargs)
        except TypeError:  # copy/pickle call __new__ bare; __init__ reports real misuse
            return self
        bound.apply_defaults()
        config = dict(bound.arguments)
        config.pop(next(iter(config)))  # self
        for name, param in inspect.signature(cls.__init__).parameters.items():
            if param.kind is inspect.Parameter.VAR_KEYWORD:
                config.update(config.pop(name, {}))
            elif param.kind is inspect.Parameter.VAR_POSITIONAL:
                config.pop(name, None)
        object.__setattr__(self, "_config", config)
        return self

    def __init__(self, name: str | None = None) -> None:
        super().__init__()
        self.name = name
        self.built = False

    def build(self, input_shape: Any) -> None:
        """Create weights for inputs of ``input_shape`` (batch dimension included)."""

    def get_config(self) -> dict[str, Any]:
        """The constructor arguments that rebuild this layer (see ``from_config``)."""
        return dict(self._config)

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> Layer:
        return cls(**config)

    def extra_repr(self) -> str:
        return ", ".join(f"{k}={v!r}" for k, v in self._config.items() if k != "name")

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if any(isinstance(a, SymbolicTensor) for a in _flatten(args)):
            return symbolic_call(self, args, kwargs)
        if not self.built:
            self._build_from(args)
        return super().__call__(*args, **kwargs)

    def _build_from(self, args: tuple[Any, ...]) -> None:
        tensors = [a for a in _flatten(args) if isinstance(a, torch.Tensor)]
        shapes = [tuple(t.shape) for t in tensors]
        self.build(shapes[0] if len(args) == 1 and isinstance(args[0], torch.Tensor) else shapes)
        self.built = True
        if tensors:
            self.to(tensors[0].device)


def _flatten(args: Any) -> list[Any]:
    if isinstance(args, (list, tuple)):
        return [x for a in args for x in _flatten(a)]
    if isinstance(args, dict):
        return [x for a in args.values() for x in _flatten(a)]
    return [args]
