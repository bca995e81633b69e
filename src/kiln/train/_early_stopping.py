"""EarlyStopping: stop training when a monitored metric stops improving (Keras 3 semantics)."""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING, Any

import torch

from kiln.train._callback import Callback, Logs
from kiln.train._monitor import Monitor

if TYPE_CHECKING:
    from kiln.train._trainer import Trainer


class EarlyStopping(Callback):
    """Stop training once ``monitor`` has not improved for ``patience`` epochs.

    Each monitored epoch counts toward ``patience``; an improvement (by more than
    ``min_delta``) that also beats ``baseline`` (when given) resets the count. Once the count
    reaches ``patience`` on an epoch without improvement (and past the first epoch), the trainer
    stops after that epoch. Epochs before ``start_from_epoch`` are ignored. As in Keras 3, an
    improvement that fails to beat ``baseline`` is still recorded as the best and never stops
    training by itself.

    With ``restore_best_weights`` a CPU copy of the model's ``state_dict`` is taken on every
    improvement (only then) and loaded back when training ends, whether or not it stopped early.

    After training, ``stopped_epoch`` (0 if it never fired) and ``best_epoch`` are 0-based epochs.
    """

    def __init__(
        self,
        monitor: str = "val_loss",
        min_delta: float = 0.0,
        patience: int = 0,
        mode: str = "auto",
        baseline: float | None = None,
        restore_best_weights: bool = False,
        start_from_epoch: int = 0,
    ) -> None:
        if patience < 0 or start_from_epoch < 0:
            raise ValueError(
                "EarlyStopping needs patience >= 0 and start_from_epoch >= 0, received "
                f"patience={patience}, start_from_epoch={start_from_epoch}"
            )
        self._monitor = Monitor("EarlyStopping", monitor, mode, min_delta)
        self.monitor, self.mode, self.min_delta = monitor, self._monitor.mode, abs(min_delta)
        self.patience = patience
        self.baseline = baseline
        self.restore_best_weights = restore_best_weights
        self.start_from_epoch = start_from_epoch
        self._resumed = False
        self._reset()

    def _reset(self) -> None:
        self.wait = 0
        self.best = self._monitor.worst
        self.best_epoch = 0
        self.stopped_epoch = 0
        self.best_weights: dict[str, Any] | None = None

    def on_train_begin(self, trainer: Trainer) -> None:
        if not self._resumed:  # a fresh fit reuses the instance; a resumed one keeps its state
            self._reset()
        self._resumed = False

    def on_epoch_end(self, trainer: Trainer, epoch: int, logs: Logs) -> None:
        current = self._monitor.read(logs)
        if current is None or epoch < self.start_from_epoch:
            return
        self.wait += 1
        if self._monitor.improved(current, self.best):
            self.best, self.best_epoch = current, epoch
            if self.restore_best_weights:
                self.best_weights = _cpu_copy(trainer.model.state_dict())
            if self.baseline is None or self._monitor.improved(current, self.baseline):
                self.wait = 0
            return
        if self.wait >= self.patience and epoch > 0:
            self.stopped_epoch = epoch
            trainer.stop_training = True

    def on_train_end(self, trainer: Trainer, logs: Logs) -> None:
        if self.restore_best_weights and self.best_weights is not None:
            trainer.model.load_state_dict(self.best_weights)

    def state_dict(self) -> dict[str, Any]:
        return {
            "wait": self.wait,
            "best": self.best,
            "best_epoch": self.best_epoch,
            "stopped_epoch": self.stopped_epoch,
            "best_weights": self.best_weights,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.wait = state["wait"]
        self.best = state["best"]
        self.best_epoch = state["best_epoch"]
        self.stopped_epoch = state["stopped_epoch"]
        self.best_weights = state["best_weights"]
        self._resumed = True


def _cpu_copy(state: dict[str, Any]) -> dict[str, Any]:
    """Detached CPU copies of tensors (a GPU->CPU copy syncs, so only on improvement)."""
    return {
        k: v.detach().to("cpu", copy=True) if isinstance(v, torch.Tensor) else copy.deepcopy(v)
        for k, v in state.items()
    }
