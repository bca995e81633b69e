"""Low-latency inference: optimize a trained model, store it, serve it, benchmark it."""

from kiln.deploy._check import PassRejected
from kiln.deploy._engine import Engine, eager_engine
from kiln.deploy._optimize import optimize
from kiln.deploy._repository import load, load_repository, save

__all__ = ["Engine", "PassRejected", "eager_engine", "load", "load_repository", "optimize", "save"]
