"""Callbacks for ``Trainer.fit`` (exposed as ``kiln.callbacks``)."""

from kiln.train._callback import Callback
from kiln.train._csv_logger import CSVLogger
from kiln.train._early_stopping import EarlyStopping
from kiln.train._json_logger import JSONLogger
from kiln.train._lr_scheduler import LearningRateScheduler
from kiln.train._model_checkpoint import ModelCheckpoint
from kiln.train._progress_bar import ProgressBar
from kiln.train._reduce_lr_on_plateau import ReduceLROnPlateau
from kiln.train._warmup_cosine import WarmupCosine, warmup_cosine

__all__ = [
    "CSVLogger",
    "Callback",
    "EarlyStopping",
    "JSONLogger",
    "LearningRateScheduler",
    "ModelCheckpoint",
    "ProgressBar",
    "ReduceLROnPlateau",
    "WarmupCosine",
    "warmup_cosine",
]
