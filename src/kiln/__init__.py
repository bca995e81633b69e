"""kiln: a deep-learning workbench for GPUs, on PyTorch.

>>> import kiln
>>> from kiln import layers as L
>>> model = kiln.Sequential([kiln.Input((4,)), L.Dense(8, activation="relu"), L.Dense(2)])
>>> model.compile(optimizer="adam", loss="cross_entropy", metrics=["accuracy"])
"""

from kiln import callbacks, datasets, layers, tune, zoo
from kiln._version import __version__
from kiln.model import Input, Model, Sequential, load_model

__all__ = [
    "Input",
    "Model",
    "Sequential",
    "__version__",
    "callbacks",
    "datasets",
    "layers",
    "load_model",
    "tune",
    "zoo",
]
