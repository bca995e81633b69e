"""The model zoo's registry: ``@register_model`` adds a builder and its training recipe."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from torch import nn


@dataclass(frozen=True)
class ZooEntry:
    """A registered model: how to build it and how ``kiln train NAME`` trains it."""

    name: str
    build: Callable[..., nn.Module]
    description: str
    dataset: str  # a kiln.datasets function name, or "synthetic"
    recipe: dict[str, Any] = field(default_factory=dict)  # compile and fit defaults
    test_kwargs: dict[str, Any] = field(default_factory=dict)  # a small build for fast tests


_REGISTRY: dict[str, ZooEntry] = {}


def register_model(
    name: str, *, dataset: str, test_kwargs: dict[str, Any] | None = None, **recipe: Any
) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    """Register a builder under ``name``; ``recipe`` holds compile/fit defaults (epochs, lr...).

    ``recipe`` keys other than ``epochs``, ``batch_size``, ``schedule`` and ``samples`` (the
    synthetic training set's size) go to ``model.compile``: ``optimizer``, ``loss``,
    ``metrics``, ``lr`` and optimizer options such as ``momentum``. ``test_kwargs`` are builder
    arguments for a smaller model that the zoo's shared tests use (e.g. ``image_size=64``).
    """

    def decorate(build: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        if name in _REGISTRY:
            raise ValueError(f"A zoo model named {name!r} is already registered.")
        doc = (build.__doc__ or "").strip().splitlines()
        _REGISTRY[name] = ZooEntry(
            name, build, doc[0] if doc else "", dataset, recipe, dict(test_kwargs or {})
        )
        return build

    return decorate


def get_entry(name: str) -> ZooEntry:
    if name not in _REGISTRY:
        raise KeyError(
            f"No zoo model named {name!r}. Available: {', '.join(sorted(_REGISTRY))} "
            "(see `kiln zoo list`)."
        )
    return _REGISTRY[name]


def create_model(name: str, **kwargs: Any) -> nn.Module:
    """Build the zoo model ``name`` (e.g. ``kiln.zoo.create_model("lenet5")``)."""
    return get_entry(name).build(**kwargs)


def list_models() -> list[ZooEntry]:
    return [_REGISTRY[k] for k in sorted(_REGISTRY)]
