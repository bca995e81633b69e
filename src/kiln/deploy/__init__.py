"""Low-latency inference: optimize a trained model, store it, serve it, benchmark it."""

from kiln.deploy._check import PassRejected
from kiln.deploy._engine import Engine, eager_engine
from kiln.deploy._optimize import optimize

__all__ = ["Engine", "PassRejected", "eager_engine", "optimize"]
