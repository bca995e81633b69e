"""Lambda: any function or torch module as a layer, usable in functional graphs."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch import nn

from kiln.layers._base import Layer
from kiln.layers._serialization import (
    deserialize_callable,
    is_json,
    is_spec,
    serialize_callable,
)


class Lambda(Layer):
    """Calls ``fn(*inputs, **arguments)``: ``Lambda(nn.ReLU())(x)``, ``Lambda(torch.flatten,
    arguments={"start_dim": 1})``.

    A module's weights (if any) belong to this layer, under ``fn.``. To be saved, ``fn`` must be
    a function importable by module and name (saved as ``"module:name"``) or a torch module
    rebuildable from its constructor arguments (saved as its class path and arguments); lambdas
    and closures work but raise a ValueError from ``get_config`` (i.e. at save time).
    ``fn`` may also be given in that saved form, e.g. ``Lambda("torch.nn.functional:relu")``.
    """

    def __init__(
        self,
        fn: Callable[..., Any] | nn.Module | str | dict[str, Any],
        arguments: dict[str, Any] | None = None,
        name: str | None = None,
    ) -> None:
        super().__init__(name=name)
        if is_spec(fn):
            fn = deserialize_callable(fn)  # type: ignore[arg-type]
        if not callable(fn):
            raise ValueError(
                "Lambda expects a function, a torch module, or a 'module:function' import path. "
                f"Received: fn={fn!r}"
            )
        self.fn = fn
        self.arguments = dict(arguments or {})

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        return self.fn(*args, **kwargs, **self.arguments)

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        if not is_spec(config["fn"]):
            config["fn"] = serialize_callable(config["fn"], "Lambda")
        if not is_json(self.arguments):
            raise ValueError(
                "Lambda cannot save arguments that are not JSON values (numbers, strings, bools, "
                f"None, lists, dicts). Received: arguments={self.arguments!r}"
            )
        return config
