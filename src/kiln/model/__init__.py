"""Models: Sequential, functional Model, summary, save/load."""

from kiln.layers._symbolic import Input
from kiln.model._model import Model
from kiln.model._saving import load_model
from kiln.model._sequential import Sequential

__all__ = ["Input", "Model", "Sequential", "load_model"]
