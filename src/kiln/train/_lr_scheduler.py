"""LearningRateScheduler: set the learning rate from a function or a torch scheduler."""

from __future__ import annotations

import inspect
import numbers
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Literal, TypeAlias

import torch
from torch.optim.lr_scheduler import LRScheduler
from torch.optim.lr_scheduler import ReduceLROnPlateau as TorchReduceLROnPlateau

from kiln.train._callback import Callback, Logs
from kiln.train._optimizer_lr import (
    group_lrs,
    group_ratios,
    optimizer_of,
    set_group_lrs,
    set_lr,
)

if TYPE_CHECKING:
    from kiln.train._trainer import Trainer

Schedule: TypeAlias = (
    Callable[[int], float]
    | Callable[[int, float], float]
    | LRScheduler
    | Callable[[torch.optim.Optimizer], LRScheduler]
)
_FACTORY_NAMES = ("optimizer", "opt", "optim")


class LearningRateScheduler(Callback):
    """Set the learning rate each epoch (``per="epoch"``) or each optimizer step (``per="step"``).

    ``schedule`` is one of:

    - a function ``(index) -> lr`` or ``(index, lr) -> lr`` (told apart by how many positional
      parameters it takes, like Keras), where ``index`` is the 0-based epoch about to run, or
      the 0-based step about to run, and ``lr`` is the current lr of the first param group.
      Param groups with different lrs keep their ratio to the first group.
    - a ``torch.optim.lr_scheduler.LRScheduler`` built on ``trainer.optimizer``; its ``step()``
      is called after every epoch or every optimizer step.
    - a factory ``lambda optimizer: torch.optim.lr_scheduler.X(optimizer, ...)``, called once at
      the start of training. A one-parameter function is a factory when its parameter is named
      ``optimizer`` (or ``opt``/``optim``) or annotated as an ``Optimizer``.

    The lr used during the epoch (for ``per="step"``: by its last step) goes into the epoch logs
    as ``lr``. ``state_dict`` holds what a resumed run needs to continue the schedule exactly.
    """

    def __init__(self, schedule: Schedule, per: Literal["epoch", "step"] = "epoch") -> None:
        if per not in ("epoch", "step"):
            raise ValueError(f"per must be 'epoch' or 'step', received per={per!r}")
        if isinstance(schedule, TorchReduceLROnPlateau):
            raise TypeError(
                "torch's ReduceLROnPlateau needs a metric each step; use "
                "kiln.callbacks.ReduceLROnPlateau(monitor=...) instead"
            )
        if not (isinstance(schedule, LRScheduler) or callable(schedule)):
            raise TypeError(
                "schedule must be a function (index) -> lr or (index, lr) -> lr, a torch "
                f"LRScheduler, or a factory optimizer -> LRScheduler, received {schedule!r}"
            )
        self.schedule = schedule
        self._fn: Callable[..., Any] = schedule  # type: ignore[assignment]
        self.per = per
        self.scheduler: LRScheduler | None = schedule if isinstance(schedule, LRScheduler) else None
        self._is_factory = self.scheduler is None and _is_factory(self._fn)
        self._passes_lr = self.scheduler is None and not self._is_factory and _takes_two(self._fn)
        self._ratios: list[float] = [1.0]
        self._lr: float | None = None  # lr last set on the first group
        self._index: int | None = None  # epoch or step that lr was computed for
        self._used_lr: float | None = None  # per="step": lr of the last step run, for the logs
        self._pending: dict[str, Any] | None = None  # loaded state, applied at train begin

    def on_train_begin(self, trainer: Trainer) -> None:
        optimizer = optimizer_of(trainer)
        state, self._pending = self._pending, None
        if self._is_factory:
            self.scheduler = self._build(optimizer)
        if self.scheduler is not None:
            if self.scheduler.optimizer is not optimizer:
                raise ValueError(
                    "the LRScheduler passed to LearningRateScheduler was built on another "
                    "optimizer than trainer.optimizer; pass a factory "
                    "`lambda optimizer: Scheduler(optimizer, ...)` instead"
                )
            if state is not None:
                self.scheduler.load_state_dict(state["scheduler"])
                set_group_lrs(optimizer, self.scheduler.get_last_lr())
            return
        if state is not None:  # a resumed run: the schedule already ran up to state["index"]
            self._ratios, self._lr, self._index = state["ratios"], state["lr"], state["index"]
            set_lr(optimizer, self._lr, self._ratios)
        else:
            self._ratios, self._lr, self._index = group_ratios(optimizer), None, None
        if self.per == "step":
            self._apply(optimizer, trainer.step)

    def on_epoch_begin(self, trainer: Trainer, epoch: int) -> None:
        if self.per == "epoch" and self.scheduler is None:
            self._apply(optimizer_of(trainer), epoch)

    def on_batch_end(self, trainer: Trainer, step: int, logs: Logs | None) -> None:
        if self.per != "step":
            return
        if self.scheduler is not None:
            self._used_lr = float(self.scheduler.get_last_lr()[0])
            self.scheduler.step()
        else:
            self._used_lr = self._lr
            self._apply(optimizer_of(trainer), step)

    def on_epoch_end(self, trainer: Trainer, epoch: int, logs: Logs) -> None:
        used: float | None
        if self.scheduler is not None and self.per == "epoch":
            used = float(self.scheduler.get_last_lr()[0])
            self.scheduler.step()
        else:
            used = self._used_lr if self.per == "step" else self._lr
        logs["lr"] = float(used if used is not None else group_lrs(optimizer_of(trainer))[0])

    def _apply(self, optimizer: torch.optim.Optimizer, index: int) -> None:
        """Set the lr for ``index`` (once: a resumed run may reach the same index again)."""
        if index == self._index:
            return
        try:
            if self._passes_lr:
                lr = self._fn(index, float(optimizer.param_groups[0]["lr"]))
            else:
                lr = self._fn(index)
        except TypeError as e:
            raise TypeError(
                f"calling schedule({index}) failed ({e}). A one-parameter schedule gets the "
                f"{self.per} index; a factory of torch schedulers must name its parameter "
                "`optimizer`, e.g. `lambda optimizer: StepLR(optimizer, 10)`"
            ) from e
        if isinstance(lr, LRScheduler):
            raise TypeError(
                "schedule returned an LRScheduler, so it is a factory: name its parameter "
                "`optimizer`, e.g. `lambda optimizer: StepLR(optimizer, 10)`"
            )
        if not isinstance(lr, numbers.Real | torch.Tensor):
            raise TypeError(f"schedule({index}) must return a float lr, received {lr!r}")
        set_lr(optimizer, float(lr), self._ratios)
        self._lr, self._index = float(lr), index

    def _build(self, optimizer: torch.optim.Optimizer) -> LRScheduler:
        scheduler = self._fn(optimizer)
        if not isinstance(scheduler, LRScheduler):
            raise TypeError(
                "a schedule factory (one parameter named `optimizer`) must return a torch "
                f"LRScheduler, received {scheduler!r}"
            )
        return scheduler

    def state_dict(self) -> dict[str, Any]:
        if self.scheduler is not None:
            return {"scheduler": self.scheduler.state_dict()}
        if self._lr is None:
            return {}
        return {"ratios": list(self._ratios), "lr": self._lr, "index": self._index}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if not state:
            return
        if self.scheduler is not None and not self._is_factory:
            self.scheduler.load_state_dict(state["scheduler"])
            set_group_lrs(self.scheduler.optimizer, self.scheduler.get_last_lr())
        else:
            self._pending = state


def _positional(fn: Callable[..., Any]) -> list[inspect.Parameter]:
    """Positional parameters of ``fn``; ``*args`` counts as two, no signature as one."""
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):  # some builtins have no signature
        return [inspect.Parameter("index", inspect.Parameter.POSITIONAL_ONLY)]
    kinds = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    positional = [p for p in params if p.kind in kinds]
    if any(p.kind is inspect.Parameter.VAR_POSITIONAL for p in params):
        positional += [inspect.Parameter("args", inspect.Parameter.POSITIONAL_ONLY)] * 2
    return positional


def _takes_two(fn: Callable[..., Any]) -> bool:
    return len(_positional(fn)) >= 2


def _is_factory(fn: Callable[..., Any]) -> bool:
    params = _positional(fn)
    if len(params) != 1:
        return False
    p = params[0]
    return p.name in _FACTORY_NAMES or "Optimizer" in str(p.annotation)
