"""ReduceLROnPlateau: cut the learning rate when a monitored metric stops improving (Keras)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from kiln.train._callback import Callback, Logs
from kiln.train._monitor import Monitor
from kiln.train._optimizer_lr import group_lrs, optimizer_of, set_group_lrs

if TYPE_CHECKING:
    from kiln.train._trainer import Trainer


class ReduceLROnPlateau(Callback):
    """Multiply the lr by ``factor`` after ``patience`` epochs without improvement.

    An epoch improves when ``monitor`` beats the best value by more than ``min_delta``. After
    a reduction, ``cooldown`` epochs pass before epochs without improvement count again. Every
    param group is multiplied by ``factor`` and floored at ``min_lr`` (so groups keep their
    ratios until they reach the floor); nothing happens once the first group is at ``min_lr``.

    The lr in effect during the epoch (before any reduction) goes into the logs as ``lr``.
    """

    def __init__(
        self,
        monitor: str = "val_loss",
        factor: float = 0.1,
        patience: int = 10,
        mode: str = "auto",
        min_delta: float = 1e-4,
        cooldown: int = 0,
        min_lr: float = 0.0,
    ) -> None:
        if not 0.0 < factor < 1.0:
            raise ValueError(f"ReduceLROnPlateau needs 0 < factor < 1, received factor={factor}")
        if patience < 0 or cooldown < 0 or min_lr < 0:
            raise ValueError(
                "ReduceLROnPlateau needs patience, cooldown and min_lr >= 0, received "
                f"patience={patience}, cooldown={cooldown}, min_lr={min_lr}"
            )
        self._monitor = Monitor("ReduceLROnPlateau", monitor, mode, min_delta)
        self.monitor, self.mode, self.min_delta = monitor, self._monitor.mode, abs(min_delta)
        self.factor = factor
        self.patience = patience
        self.cooldown = cooldown
        self.min_lr = min_lr
        self._resumed = False
        self._reset()

    def _reset(self) -> None:
        self.best = self._monitor.worst
        self.wait = 0
        self.cooldown_counter = 0

    def on_train_begin(self, trainer: Trainer) -> None:
        if not self._resumed:
            self._reset()
        self._resumed = False

    def on_epoch_end(self, trainer: Trainer, epoch: int, logs: Logs) -> None:
        optimizer = optimizer_of(trainer)
        lrs = group_lrs(optimizer)
        logs["lr"] = lrs[0]
        current = self._monitor.read(logs)
        if current is None:
            return
        if self.cooldown_counter > 0:
            self.cooldown_counter -= 1
            self.wait = 0
        if self._monitor.improved(current, self.best):
            self.best, self.wait = current, 0
        elif self.cooldown_counter == 0:
            self.wait += 1
            if self.wait >= self.patience and lrs[0] > self.min_lr:
                set_group_lrs(optimizer, [max(lr * self.factor, self.min_lr) for lr in lrs])
                self.cooldown_counter, self.wait = self.cooldown, 0

    def state_dict(self) -> dict[str, Any]:
        return {"best": self.best, "wait": self.wait, "cooldown_counter": self.cooldown_counter}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.best = state["best"]
        self.wait = state["wait"]
        self.cooldown_counter = state["cooldown_counter"]
        self._resumed = True
