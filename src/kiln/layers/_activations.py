"""Activation functions by name: ``get("relu")`` gives a callable, ``serialize`` names it back.

softmax and log_softmax act on one axis, which the layer picks: the last axis for ``Dense`` and
``Activation`` (Keras's rule; for rank-2 logits it is also axis 1), the channel axis 1 for
convolutions (what Keras's last axis means in its channels-last layout). ``Activation`` takes an
``axis`` argument for other cases, e.g. ``Activation("softmax", axis=1)`` on segmentation logits.

Differences from Keras: ``leaky_relu`` uses PyTorch's slope 0.01 (Keras: 0.2); ``gelu`` is the
exact form; ``hard_sigmoid`` is ``relu6(x + 3) / 6`` (Keras 3, PyTorch).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from kiln.layers._serialization import deserialize_callable, is_spec, serialize_callable

Activation = Callable[[Tensor], Tensor]
ActivationLike = str | Activation | dict[str, Any] | None


def linear(x: Tensor) -> Tensor:
    return x


def softmax(x: Tensor, axis: int = -1) -> Tensor:
    return torch.softmax(x, dim=axis)


def log_softmax(x: Tensor, axis: int = -1) -> Tensor:
    return torch.log_softmax(x, dim=axis)


_REGISTRY: dict[str, Callable[..., Tensor]] = {
    "relu": F.relu,
    "gelu": F.gelu,
    "silu": F.silu,
    "swish": F.silu,
    "tanh": torch.tanh,
    "sigmoid": torch.sigmoid,
    "softmax": softmax,
    "log_softmax": log_softmax,
    "leaky_relu": F.leaky_relu,
    "elu": F.elu,
    "selu": F.selu,
    "softplus": F.softplus,
    "hard_sigmoid": F.hardsigmoid,
    "linear": linear,
}
_AXIS_AWARE = {"softmax", "log_softmax"}

# Other spellings of the same functions, which save under the registry name.
_FUNCTIONS: dict[Any, str] = {fn: name for name, fn in reversed(_REGISTRY.items())} | {
    torch.relu: "relu",
    F.tanh: "tanh",
    F.sigmoid: "sigmoid",
    torch.softmax: "softmax",
    F.softmax: "softmax",
    torch.log_softmax: "log_softmax",
    F.log_softmax: "log_softmax",
    torch.selu: "selu",
}
# Modules built with default arguments count as the registry function.
_MODULES: dict[type[nn.Module], str] = {
    nn.ReLU: "relu",
    nn.GELU: "gelu",
    nn.SiLU: "silu",
    nn.Tanh: "tanh",
    nn.Sigmoid: "sigmoid",
    nn.LeakyReLU: "leaky_relu",
    nn.ELU: "elu",
    nn.SELU: "selu",
    nn.Softplus: "softplus",
    nn.Hardsigmoid: "hard_sigmoid",
    nn.Identity: "linear",
}


def names() -> list[str]:
    """The registered activation names."""
    return sorted(_REGISTRY)


def get(identifier: ActivationLike, axis: int = -1) -> Activation:
    """The activation for a name, a saved spec or a callable (None means linear).

    ``axis`` is where softmax and log_softmax normalize; other activations ignore it.
    """
    name = _name_of(identifier)
    if name is not None:
        fn = _REGISTRY[name]
        return partial(fn, axis=axis) if name in _AXIS_AWARE else fn
    if is_spec(identifier):
        return deserialize_callable(identifier)  # type: ignore[arg-type]
    if callable(identifier) and not isinstance(identifier, str):
        return identifier
    raise ValueError(
        f"Unknown activation. Valid names: {', '.join(names())}, None, a callable, or a "
        f"'module:function' import path. Received: activation={identifier!r}"
    )


def serialize(identifier: ActivationLike) -> str | dict[str, Any] | None:
    """A JSON value that ``get`` turns back into the same activation."""
    if identifier is None or isinstance(identifier, (str, dict)):
        return identifier
    name = _name_of(identifier)
    return name if name is not None else serialize_callable(identifier, "activation")


def _name_of(identifier: Any) -> str | None:
    if identifier is None:
        return "linear"
    if isinstance(identifier, str):
        return identifier if identifier in _REGISTRY else None
    if isinstance(identifier, nn.Module):
        cls = type(identifier)
        default = cls in _MODULES and repr(identifier) == repr(cls())
        return _MODULES[cls] if default else None
    try:
        return _FUNCTIONS.get(identifier)
    except TypeError:  # unhashable callable
        return None
