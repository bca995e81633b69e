"""Turning a layer's captured constructor arguments into JSON."""

from __future__ import annotations

from typing import Any

from kiln.layers import _activations as activations
from kiln.layers import _initializers as initializers


def serialize_callables(config: dict[str, Any]) -> dict[str, Any]:
    """Replace activation and initializer callables by registry names or import paths.

    Keys are recognized by name: ``activation`` and ``*_initializer``. A callable with neither
    a registry name nor an import path raises here, i.e. when the model is saved.
    """
    for key, value in config.items():
        if key.endswith("activation"):
            config[key] = activations.serialize(value)
        elif key.endswith("initializer"):
            config[key] = initializers.serialize(value)
    return config
