"""Checks for constructor arguments and input shapes, raising errors that echo the value."""

from __future__ import annotations

from collections.abc import Container, Sequence
from typing import Any

from torch import nn

GENERIC_HINT = "Reshape the data or add a Reshape/Flatten layer before it."
CHANNEL_HINT = "Add a channel axis (x[:, None]) or use Reshape."


def positive_int(owner: str, arg: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"{owner} expects {arg} to be a positive int. Received: {arg}={value!r}")
    return value


def int_tuple(owner: str, arg: str, value: Any, n: int, minimum: int = 1) -> tuple[int, ...]:
    """``value`` as ``n`` ints >= ``minimum``; a single int is repeated (3 -> (3, 3))."""
    values = (value,) * n if isinstance(value, int) else value
    ok = isinstance(values, Sequence) and len(values) == n
    if not ok or any(isinstance(v, bool) or not isinstance(v, int) or v < minimum for v in values):
        what = "positive ints" if minimum == 1 else f"ints >= {minimum}"
        raise ValueError(
            f"{owner} expects {arg} to be an int or {n} {what}. Received: {arg}={value!r}"
        )
    return tuple(values)


def fraction(owner: str, arg: str, value: Any) -> float:
    """A float in [0, 1)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < 1:
        raise ValueError(f"{owner} expects {arg} in [0, 1). Received: {arg}={value!r}")
    return float(value)


def choice(owner: str, arg: str, value: Any, options: Sequence[str]) -> str:
    if value not in options:
        valid = ", ".join(repr(o) for o in options)
        raise ValueError(f"{owner} expects {arg} to be one of {valid}. Received: {arg}={value!r}")
    return value


def expect_rank(
    layer: nn.Module, shape: Sequence[int], ranks: Container[int], layout: str, hint: str = ""
) -> None:
    """Raise when ``shape`` (batch included) does not have one of ``ranks``."""
    if len(shape) not in ranks:
        raise ValueError(
            f"{type(layer).__name__} expects inputs of shape {layout}, received an input of "
            f"shape {tuple(shape)} (rank {len(shape)}). {hint or GENERIC_HINT}"
        )


def expect_size(layer: nn.Module, shape: Sequence[int], axis: int, size: int, what: str) -> None:
    """Raise when a built layer gets an input whose ``axis`` has another size than at build."""
    if shape[axis] != size:
        raise ValueError(
            f"{type(layer).__name__} was built for inputs with {size} {what} (axis {axis}), "
            f"received an input of shape {tuple(shape)}."
        )
