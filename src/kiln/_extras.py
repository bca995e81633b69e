"""Optional dependencies: import them lazily, and fail with the pip command that installs them."""

from __future__ import annotations

import importlib
from types import ModuleType


def require(module: str, extra: str) -> ModuleType:
    """Import ``module``, or raise ImportError naming ``pip install 'kiln[extra]'``."""
    try:
        return importlib.import_module(module)
    except ImportError as error:
        raise ImportError(
            f"this part of kiln needs the optional package {module!r}, which is not installed. "
            f"Install it with: pip install 'kiln[{extra}]'"
        ) from error
