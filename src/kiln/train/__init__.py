"""Training: fit/evaluate/predict, the step, losses, metrics, callbacks, resume."""

from kiln.train import callbacks
from kiln.train._callback import Callback
from kiln.train._history import History, NonFiniteLossError
from kiln.train._trainer import Trainer

__all__ = ["Callback", "History", "NonFiniteLossError", "Trainer", "callbacks"]
