"""Low-latency inference: optimize a trained model, store it, serve it, benchmark it."""

from kiln.deploy._engine import Engine, eager_engine
from kiln.deploy._inference_app import inference_app
from kiln.deploy._serve import serve

__all__ = ["Engine", "eager_engine", "inference_app", "serve"]
