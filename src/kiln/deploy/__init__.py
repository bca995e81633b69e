"""Low-latency inference: optimize a trained model, store it, serve it, benchmark it."""

from kiln.deploy._engine import Engine, eager_engine

__all__ = ["Engine", "eager_engine"]
