"""The model zoo: one file per model family, each registered with ``@register_model``."""

from kiln.zoo import lenet5 as _lenet5  # noqa: F401  (registers "lenet5")
from kiln.zoo import resnet as _resnet  # noqa: F401  (registers "resnet18" ... "resnet101")
from kiln.zoo._registry import ZooEntry, create_model, get_entry, list_models, register_model

__all__ = ["ZooEntry", "create_model", "get_entry", "list_models", "register_model"]
