"""Weight initializers by name: ``get("he_normal")`` gives an in-place function of one tensor.

Fans follow PyTorch's weight layout, ``(out, in, *kernel)``: fan_in = in * prod(kernel), fan_out
= out * prod(kernel); a 1-D tensor (a bias) has fan_in = fan_out = its length, as in Keras. The
variance-scaling family matches Keras: ``*_uniform`` draw from U(-limit, limit), ``*_normal``
from a normal truncated at two standard deviations, rescaled to the target variance.
``"kaiming_normal_fan_out"`` is torchvision's ResNet convolution init, untruncated.

``"torch"`` means "what PyTorch does for this layer type" (e.g. U(-1/sqrt(fan_in), 1/sqrt(fan_in))
for nn.Linear and nn.Conv2d weights and biases); each layer supplies that default. A custom
initializer is any function that fills a tensor in place, such as ``torch.nn.init.kaiming_normal_``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from kiln.layers._serialization import deserialize_callable, is_spec, serialize_callable

Initializer = Callable[[Tensor], Any]
InitializerLike = str | Initializer | dict[str, Any]

_TRUNCATED_STD = 0.87962566103423978  # std of a unit normal truncated to [-2, 2]


def fans(shape: Sequence[int]) -> tuple[int, int]:
    """(fan_in, fan_out) of a weight in PyTorch layout ``(out, in, *kernel)``."""
    if len(shape) == 1:
        return shape[0], shape[0]
    receptive = math.prod(shape[2:])
    return shape[1] * receptive, shape[0] * receptive


def variance_scaling(tensor: Tensor, scale: float, mode: str, distribution: str) -> None:
    fan_in, fan_out = fans(tensor.shape)
    n = {"fan_in": fan_in, "fan_out": fan_out, "fan_avg": (fan_in + fan_out) / 2}[mode]
    variance = scale / max(1.0, n)
    if distribution == "uniform":
        limit = math.sqrt(3 * variance)
        nn.init.uniform_(tensor, -limit, limit)
    elif distribution == "untruncated_normal":
        nn.init.normal_(tensor, 0.0, math.sqrt(variance))
    else:
        std = math.sqrt(variance) / _TRUNCATED_STD
        nn.init.trunc_normal_(tensor, 0.0, std, -2 * std, 2 * std)


def glorot_uniform(tensor: Tensor) -> None:
    variance_scaling(tensor, 1.0, "fan_avg", "uniform")


def glorot_normal(tensor: Tensor) -> None:
    variance_scaling(tensor, 1.0, "fan_avg", "normal")


def he_uniform(tensor: Tensor) -> None:
    variance_scaling(tensor, 2.0, "fan_in", "uniform")


def he_normal(tensor: Tensor) -> None:
    variance_scaling(tensor, 2.0, "fan_in", "normal")


def lecun_uniform(tensor: Tensor) -> None:
    variance_scaling(tensor, 1.0, "fan_in", "uniform")


def lecun_normal(tensor: Tensor) -> None:
    variance_scaling(tensor, 1.0, "fan_in", "normal")


def kaiming_normal_fan_out(tensor: Tensor) -> None:
    """N(0, 2 / fan_out), untruncated: ``nn.init.kaiming_normal_(t, mode="fan_out",
    nonlinearity="relu")``, as torchvision initializes ResNet convolutions."""
    variance_scaling(tensor, 2.0, "fan_out", "untruncated_normal")


def uniform(tensor: Tensor) -> None:
    """Keras's RandomUniform default, U(-0.05, 0.05)."""
    nn.init.uniform_(tensor, -0.05, 0.05)


def normal(tensor: Tensor) -> None:
    """Keras's RandomNormal default, N(0, 0.05**2)."""
    nn.init.normal_(tensor, 0.0, 0.05)


def torch_uniform(fan_in: int) -> Initializer:
    """U(-1/sqrt(fan_in), 1/sqrt(fan_in)): PyTorch's default for Linear/Conv weights and biases."""
    bound = 1 / math.sqrt(fan_in) if fan_in > 0 else 0.0
    return lambda tensor: nn.init.uniform_(tensor, -bound, bound)


_REGISTRY: dict[str, Initializer] = {
    "glorot_uniform": glorot_uniform,
    "glorot_normal": glorot_normal,
    "he_uniform": he_uniform,
    "he_normal": he_normal,
    "lecun_uniform": lecun_uniform,
    "lecun_normal": lecun_normal,
    "kaiming_normal_fan_out": kaiming_normal_fan_out,
    "zeros": nn.init.zeros_,
    "ones": nn.init.ones_,
    "orthogonal": nn.init.orthogonal_,
    "uniform": uniform,
    "normal": normal,
}
_NAMES: dict[Any, str] = {fn: name for name, fn in _REGISTRY.items()}


def names() -> list[str]:
    """The registered initializer names ("torch" included)."""
    return sorted([*_REGISTRY, "torch"])


def get(identifier: InitializerLike, torch_default: Initializer | None = None) -> Initializer:
    """The initializer for a name, a saved spec or a callable; "torch" gives ``torch_default``."""
    if identifier == "torch" and torch_default is not None:
        return torch_default
    if isinstance(identifier, str) and identifier in _REGISTRY:
        return _REGISTRY[identifier]
    if is_spec(identifier):
        return deserialize_callable(identifier)  # type: ignore[arg-type]
    if callable(identifier) and not isinstance(identifier, str):
        return identifier
    raise ValueError(
        f"Unknown initializer. Valid names: {', '.join(names())}, a function that fills a tensor "
        f"in place, or a 'module:function' import path. Received: initializer={identifier!r}"
    )


def initialize(tensor: Tensor, identifier: InitializerLike, torch_default: Initializer) -> None:
    """Fill ``tensor`` in place (without recording autograd history)."""
    with torch.no_grad():
        get(identifier, torch_default)(tensor)


def serialize(identifier: InitializerLike) -> str | dict[str, Any]:
    """A JSON value that ``get`` turns back into the same initializer."""
    if isinstance(identifier, (str, dict)):
        return identifier
    try:
        name = _NAMES.get(identifier)
    except TypeError:  # unhashable callable
        name = None
    return name if name is not None else serialize_callable(identifier, "initializer")


def check(identifier: Any) -> InitializerLike:
    """``identifier``, or raise now (at layer construction) if ``get`` would reject it."""
    get(identifier, torch_default=torch_uniform(1))
    return identifier
