"""Low-latency inference: optimize a trained model, store it, serve it, benchmark it."""

from kiln.deploy._benchmark import Benchmark, Timing, benchmark, plot
from kiln.deploy._check import PassRejected
from kiln.deploy._engine import Engine, eager_engine
from kiln.deploy._inference_app import inference_app
from kiln.deploy._optimize import optimize
from kiln.deploy._repository import load, load_repository, save
from kiln.deploy._serve import serve

__all__ = [
    "Benchmark",
    "Engine",
    "PassRejected",
    "Timing",
    "benchmark",
    "eager_engine",
    "inference_app",
    "load",
    "load_repository",
    "optimize",
    "plot",
    "save",
    "serve",
]
