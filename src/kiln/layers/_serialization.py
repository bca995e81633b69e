"""Callables and torch modules as JSON: an import path, or a class path plus constructor args.

A function is saved as ``"package.module:name"`` when importing that path gives the same object
back (so lambdas and nested functions cannot be saved). A ``torch.nn.Module`` is saved as
``{"class": "package.module:Class", "config": {...}}`` when its constructor arguments can be
read back from same-named attributes and rebuilding from them gives an identical ``repr``;
its weights travel in the state dict, not here. Loading imports the named module, so only load
configs you trust.
"""

from __future__ import annotations

import importlib
import inspect
from typing import Any

import torch
from torch import nn

JSON_SCALARS = (type(None), bool, int, float, str)
_MISSING = object()


def load(path: str) -> Any:
    """The object at ``"package.module:attr.attr"``."""
    module_name, _, attr = path.partition(":")
    obj: Any = importlib.import_module(module_name)
    for part in attr.split("."):
        obj = getattr(obj, part)
    return obj


def import_path(obj: Any) -> str | None:
    """``"module:name"`` that imports back to ``obj`` itself, or None."""
    module = getattr(obj, "__module__", None)
    for attr in (getattr(obj, "__qualname__", None), getattr(obj, "__name__", None)):
        if not module or not attr or "<" in attr:
            continue
        path = f"{module}:{attr}"
        try:
            if load(path) is obj:
                return path
        except (ImportError, AttributeError):
            pass
    return None


def is_json(value: Any) -> bool:
    if isinstance(value, JSON_SCALARS):
        return True
    if isinstance(value, (list, tuple)):
        return all(is_json(v) for v in value)
    if isinstance(value, dict):
        return all(isinstance(k, str) and is_json(v) for k, v in value.items())
    return False


def module_spec(module: nn.Module) -> dict[str, Any] | None:
    """``{"class": path, "config": kwargs}`` that rebuilds ``module`` (weights aside), or None."""
    # the module's own class, not a subclass torch made on the fly (FSDP2's FSDPLinear, ...)
    cls: type = next(
        c for c in type(module).__mro__ if not c.__module__.startswith("torch.distributed")
    )
    path = import_path(cls)
    if path is None:
        return None
    config = {}
    init = cls.__init__  # type: ignore[misc]
    for name, param in list(inspect.signature(init).parameters.items())[1:]:
        value = getattr(module, name, _MISSING)
        if isinstance(param.default, bool) and isinstance(value, (torch.Tensor, type(None))):
            value = value is not None  # e.g. Linear's bias=False leaves a None bias attribute
        if value is not _MISSING and is_json(value):
            config[name] = value
    try:
        with torch.device("meta"):  # rebuilding only to compare reprs: allocate nothing
            rebuilt = cls(**config)
    except Exception:  # any constructor failure means "not rebuildable from its attributes"
        return None
    return {"class": path, "config": config} if repr(rebuilt) == repr(module) else None


def serialize_callable(obj: Any, owner: str) -> str | dict[str, Any]:
    """A JSON spec for a function or module; raises a ValueError saying why when there is none."""
    spec = module_spec(obj) if isinstance(obj, nn.Module) else import_path(obj)
    if spec is None:
        raise ValueError(
            f"{owner} cannot save {obj!r}: only functions importable by module and name, and "
            "torch modules rebuildable from their constructor arguments, can be saved. Define it "
            "as a top-level function in an importable module, or write a kiln Layer subclass. "
            f"Received: {obj!r}"
        )
    return spec


def deserialize_callable(spec: str | dict[str, Any]) -> Any:
    """Inverse of ``serialize_callable``."""
    if isinstance(spec, str):
        return load(spec)
    return load(spec["class"])(**{k: _tuples(v) for k, v in spec["config"].items()})


def is_spec(value: Any) -> bool:
    return (isinstance(value, str) and ":" in value) or (
        isinstance(value, dict) and set(value) == {"class", "config"}
    )


def _tuples(value: Any) -> Any:
    """JSON turns tuples into lists; torch constructors expect the tuples back."""
    return tuple(_tuples(v) for v in value) if isinstance(value, list) else value
