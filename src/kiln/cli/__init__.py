"""The ``kiln`` command."""

from kiln.cli._main import main

__all__ = ["main"]
