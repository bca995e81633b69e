"""Modules to JSON configs and back, so saved models load without the code that built them."""

from __future__ import annotations

import importlib
import inspect
from typing import Any

from torch import nn

from kiln.layers import Layer

_JSON_SCALARS = (bool, int, float, str, type(None))


def module_config(module: nn.Module) -> dict[str, Any]:
    """``{"class_name": ..., "config": {...}}`` for a kiln layer, a kiln model or a torch module."""
    if hasattr(module, "get_config"):
        config = module.get_config()  # type: ignore[operator]
        name = type(module).__name__
        if Layer.registry.get(name) is not type(module) and not _is_kiln_model(module):
            name = _import_path(type(module))
    else:
        config = _torch_module_config(module)
        name = _import_path(type(module))
    _check_json(config, f"{type(module).__name__}.get_config()")
    return {"class_name": name, "config": config}


def module_from_config(spec: dict[str, Any]) -> nn.Module:
    """Rebuild a module from ``module_config``'s output (weights are loaded separately)."""
    name, config = spec["class_name"], spec["config"]
    cls = Layer.registry.get(name) or _kiln_models().get(name) or _import(name)
    if hasattr(cls, "from_config"):
        return cls.from_config(config)
    return cls(**config)


def _torch_module_config(module: nn.Module) -> dict[str, Any]:
    """Constructor arguments read back from a torch module's attributes of the same name.

    Works for torch.nn's own modules (Linear, Conv2d, ReLU, ...), which keep their arguments as
    attributes; ``bias=False`` shows up as a ``None`` bias. The result is verified by rebuilding
    the module and comparing its state_dict layout, so a module this cannot describe fails at
    save time with a clear message instead of loading wrong.
    """
    config: dict[str, Any] = {}
    for name, param in inspect.signature(type(module).__init__).parameters.items():
        if name == "self" or param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            continue
        if not hasattr(module, name):
            continue
        value = getattr(module, name)
        if isinstance(param.default, bool) and not isinstance(value, bool):
            value = value is not None  # e.g. Linear.bias: a Parameter or None
        if isinstance(value, tuple):
            value = list(value)
        if _is_json(value):
            config[name] = value
    _verify_rebuild(module, config)
    return config


def _verify_rebuild(module: nn.Module, config: dict[str, Any]) -> None:
    try:
        rebuilt = type(module)(**config)
        same = {k: tuple(v.shape) for k, v in rebuilt.state_dict().items()} == {
            k: tuple(v.shape) for k, v in module.state_dict().items()
        }
    except Exception:  # any failure to rebuild means we cannot describe this module
        same = False
    if not same:
        raise TypeError(
            f"Cannot save the architecture of {type(module).__name__}: kiln could not read its "
            "constructor arguments back. Give the class get_config() (returning its constructor "
            "kwargs) and from_config(config), wrap its math in kiln layers, or save weights only "
            "with model.save_weights(path)."
        )


def _check_json(value: Any, where: str) -> None:
    if not _is_json(value):
        raise TypeError(
            f"{where} must return JSON values (numbers, strings, bools, None, lists, dicts) so "
            f"the model can be saved; received {value!r}."
        )


def _is_json(value: Any) -> bool:
    if isinstance(value, _JSON_SCALARS):
        return True
    if isinstance(value, (list, tuple)):
        return all(_is_json(v) for v in value)
    if isinstance(value, dict):
        return all(isinstance(k, str) and _is_json(v) for k, v in value.items())
    return False


def _import_path(cls: type) -> str:
    return f"{cls.__module__}:{cls.__qualname__}"


def _import(path: str) -> type:
    module_name, _, qualname = path.partition(":")
    try:
        obj: Any = importlib.import_module(module_name)
        for part in qualname.split("."):
            obj = getattr(obj, part)
    except (ImportError, AttributeError) as e:
        raise ImportError(
            f"The saved model uses {path!r}, which cannot be imported here ({e}). Install or "
            "import the package that defines it before loading."
        ) from e
    return obj


def _is_kiln_model(module: nn.Module) -> bool:
    return type(module) in _kiln_models().values()


def _kiln_models() -> dict[str, type]:
    from kiln.model._model import Model
    from kiln.model._sequential import Sequential

    return {"Model": Model, "Sequential": Sequential}
