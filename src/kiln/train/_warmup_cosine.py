"""WarmupCosine: linear warmup then cosine decay of the learning rate, set every step."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from kiln.train._callback import Callback, Logs
from kiln.train._optimizer_lr import group_lrs, optimizer_of, set_group_lrs

if TYPE_CHECKING:
    from kiln.train._trainer import Trainer


def warmup_cosine(
    step: int, peak: float, warmup_steps: int, total_steps: int, min_lr: float = 0.0
) -> float:
    """The lr of the ``step``-th optimizer step (1-based).

    ``peak * step / warmup_steps`` for ``step <= warmup_steps``, then
    ``min_lr + (peak - min_lr) * (1 + cos(pi * p)) / 2`` with
    ``p = (step - warmup_steps) / (total_steps - warmup_steps)``, so the last step
    (``step == total_steps``) runs at ``min_lr``; later steps stay there.
    """
    if step <= warmup_steps:
        return peak * step / warmup_steps
    progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
    return min_lr + (peak - min_lr) * 0.5 * (1.0 + math.cos(math.pi * progress))


class WarmupCosine(Callback):
    """Per-step schedule: linear warmup to each param group's lr, then cosine decay to ``min_lr``.

    ``WarmupCosine()`` is plain cosine decay over the whole run.

    The peak of each group is its lr when training starts (the optimizer's configured lr), so
    groups keep their ratios; ``min_lr`` is shared, as in torch's ``CosineAnnealingLR``. See
    :func:`warmup_cosine` for the formula. ``total_steps`` defaults to
    ``trainer.epochs * trainer.steps_per_epoch``. The lr of the epoch's last step goes into the
    logs as ``lr``.
    """

    def __init__(self, warmup_steps: int = 0, total_steps: int | None = None, min_lr: float = 0.0):
        if warmup_steps < 0 or min_lr < 0:
            raise ValueError(
                "WarmupCosine needs warmup_steps >= 0 and min_lr >= 0, received "
                f"warmup_steps={warmup_steps}, min_lr={min_lr}"
            )
        if total_steps is not None and total_steps < warmup_steps:
            raise ValueError(
                "WarmupCosine needs total_steps >= warmup_steps, received "
                f"total_steps={total_steps}, warmup_steps={warmup_steps}"
            )
        self.warmup_steps = warmup_steps
        self.total_steps = total_steps
        self.min_lr = min_lr
        self.peak_lrs: list[float] = []
        self._total = total_steps or 0
        self._step = 0  # optimizer steps done
        self._pending: dict[str, Any] | None = None

    def on_train_begin(self, trainer: Trainer) -> None:
        state, self._pending = self._pending, None
        if state is not None:
            self.peak_lrs, self._total = state["peak_lrs"], state["total_steps"]
        else:
            self.peak_lrs, self._total = (
                group_lrs(optimizer_of(trainer)),
                self._resolve_total(trainer),
            )
        self._step = trainer.step
        self._set(trainer, self._step + 1)

    def on_batch_end(self, trainer: Trainer, step: int, logs: Logs | None) -> None:
        self._step = step
        self._set(trainer, step + 1)

    def on_epoch_end(self, trainer: Trainer, epoch: int, logs: Logs) -> None:
        logs["lr"] = self.lr_at(max(1, self._step))[0]

    def lr_at(self, step: int) -> list[float]:
        """The lr of each param group for the ``step``-th step (1-based)."""
        return [
            warmup_cosine(step, peak, self.warmup_steps, self._total, self.min_lr)
            for peak in self.peak_lrs
        ]

    def _set(self, trainer: Trainer, step: int) -> None:
        set_group_lrs(optimizer_of(trainer), self.lr_at(step))

    def _resolve_total(self, trainer: Trainer) -> int:
        if self.total_steps is not None:
            return self.total_steps
        if not trainer.steps_per_epoch or not trainer.epochs:
            raise ValueError(
                "WarmupCosine needs total_steps when the trainer does not know its length, "
                f"received steps_per_epoch={trainer.steps_per_epoch}, epochs={trainer.epochs}"
            )
        total = trainer.epochs * trainer.steps_per_epoch
        if total < self.warmup_steps:
            raise ValueError(
                f"WarmupCosine warmup_steps={self.warmup_steps} exceeds the "
                f"{total} steps of training (epochs * steps_per_epoch)"
            )
        return total

    def state_dict(self) -> dict[str, Any]:
        return {"peak_lrs": list(self.peak_lrs), "total_steps": self._total}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._pending = dict(state)
