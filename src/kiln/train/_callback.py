"""Callbacks: small objects the trainer calls at fixed points of ``fit``.

The trainer calls, in order::

    on_train_begin(trainer)
      on_epoch_begin(trainer, epoch)
        on_batch_end(trainer, step, logs)      # every step; logs is None unless metrics were read
      on_epoch_end(trainer, epoch, logs)       # logs: {"loss": .., "accuracy": .., "val_loss": ..}
    on_train_end(trainer, logs)
    on_train_error(trainer, error)             # instead of on_train_end, when fit raises

``epoch`` counts from 0; ``step`` is the global optimizer step, counting from 1. Metrics live on
the device and are copied to the host only every ``log_every`` steps and at epoch end, so
``on_batch_end`` gets a dict of Python floats on those steps and ``None`` on the others: a
callback that needs a number every step would force a GPU sync every step. Callbacks run on
every process; a callback that writes files should check ``trainer.is_main_process``.

What a callback may touch on ``trainer``: ``model``, ``optimizer``, ``epoch``, ``step``,
``step_in_epoch`` (steps done in this epoch), ``steps_per_epoch``, ``epochs``,
``stop_training`` (set True to stop after this epoch), ``history``, ``is_main_process``,
``verbose``. Callbacks whose decisions must survive a
resume (best value so far, patience counters) implement ``state_dict``/``load_state_dict``;
the trainer stores them in the resume checkpoint.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from kiln.train._trainer import Trainer

Logs = dict[str, float]


class Callback:
    """Base class: override the hooks you need; each default does nothing."""

    def on_train_begin(self, trainer: Trainer) -> None: ...

    def on_epoch_begin(self, trainer: Trainer, epoch: int) -> None: ...

    def on_batch_end(self, trainer: Trainer, step: int, logs: Logs | None) -> None: ...

    def on_epoch_end(self, trainer: Trainer, epoch: int, logs: Logs) -> None: ...

    def on_train_end(self, trainer: Trainer, logs: Logs) -> None: ...

    def on_train_error(self, trainer: Trainer, error: BaseException) -> None: ...

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None: ...


def monitor_improved(value: float, best: float | None, mode: str, min_delta: float = 0.0) -> bool:
    """Whether ``value`` beats ``best`` by more than ``min_delta`` ("min" or "max" ``mode``)."""
    if best is None:
        return True
    return value < best - min_delta if mode == "min" else value > best + min_delta


def resolve_mode(monitor: str, mode: str) -> str:
    """'auto' means 'max' for accuracy-like metrics and 'min' for everything else."""
    if mode not in ("auto", "min", "max"):
        raise ValueError(f"mode must be 'auto', 'min' or 'max', received mode={mode!r}")
    if mode != "auto":
        return mode
    name = monitor.removeprefix("val_")
    return "max" if any(k in name for k in ("acc", "auc", "precision", "recall", "f1")) else "min"
