"""Modules to JSON configs and back, so saved models load without the code that built them."""

from __future__ import annotations

from typing import Any

from torch import nn

from kiln.layers import Layer
from kiln.layers._serialization import deserialize_callable, import_path, is_json, load, module_spec


def module_config(module: nn.Module) -> dict[str, Any]:
    """``{"class_name": ..., "config": {...}}`` for a kiln layer, a kiln model or a torch module."""
    cls = _defining_class(module)
    if hasattr(module, "get_config"):
        config = module.get_config()  # type: ignore[operator]
        name = cls.__name__
        if Layer.registry.get(name) is not cls and cls not in _kiln_models().values():
            name = import_path(cls) or _unsaveable(module, "it cannot be imported")
        if not is_json(config):
            raise TypeError(
                f"{type(module).__name__}.get_config() must return JSON values (numbers, strings, "
                f"bools, None, lists, dicts) so the model can be saved; received {config!r}."
            )
        return {"class_name": name, "config": config}
    spec = module_spec(module) or _unsaveable(
        module, "its constructor arguments can't be read back"
    )
    return {"class_name": spec["class"], "config": spec["config"]}


def module_from_config(spec: dict[str, Any]) -> nn.Module:
    """Rebuild a module from ``module_config``'s output (weights are loaded separately)."""
    name, config = spec["class_name"], spec["config"]
    cls = Layer.registry.get(name) or _kiln_models().get(name)
    if cls is not None:
        return cls.from_config(config)
    try:
        cls = load(name)
    except (ImportError, AttributeError) as e:
        raise ImportError(
            f"The saved model uses {name!r}, which cannot be imported here ({e}). Install or "
            "import the package that defines it before loading."
        ) from e
    if hasattr(cls, "from_config"):
        return cls.from_config(config)
    return deserialize_callable({"class": name, "config": config})


def _unsaveable(module: nn.Module, why: str) -> Any:
    raise TypeError(
        f"Cannot save the architecture of {type(module).__name__}: {why}. Give the class "
        "get_config() (returning its constructor kwargs) and from_config(config), build it from "
        "kiln layers, or save weights only with model.save_weights(path)."
    )


def _defining_class(module: nn.Module) -> type:
    """The module's own class: FSDP2's fully_shard swaps in a subclass made on the fly."""
    return next(c for c in type(module).__mro__ if not c.__module__.startswith("torch.distributed"))


def _kiln_models() -> dict[str, Any]:
    from kiln.model._model import Model
    from kiln.model._sequential import Sequential

    return {"Model": Model, "Sequential": Sequential}
