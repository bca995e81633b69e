"""Training: fit/evaluate/predict, the step, losses, metrics, callbacks, resume."""

from kiln.train import callbacks
from kiln.train._callback import Callback
from kiln.train._trainer import History, NonFiniteLossError, Trainer

__all__ = ["Callback", "History", "NonFiniteLossError", "Trainer", "callbacks"]
