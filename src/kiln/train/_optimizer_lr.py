"""Reading and setting the learning rate of every param group of a torch optimizer."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch


def optimizer_of(trainer: Any) -> torch.optim.Optimizer:
    """``trainer.optimizer``, or an error saying why a learning-rate callback needs one."""
    if trainer.optimizer is None:
        raise RuntimeError(
            "this callback sets the learning rate, but trainer.optimizer is None; compile the "
            "model with an optimizer before fit"
        )
    return trainer.optimizer


def group_lrs(optimizer: torch.optim.Optimizer) -> list[float]:
    """The lr of each param group, as floats (reads a tensor lr, so call it off the hot path)."""
    return [float(group["lr"]) for group in optimizer.param_groups]


def set_group_lrs(optimizer: torch.optim.Optimizer, lrs: Sequence[float | torch.Tensor]) -> None:
    """Set group ``i`` to ``lrs[i]``; a tensor lr (capturable optimizers) is filled in place."""
    if len(lrs) != len(optimizer.param_groups):
        raise ValueError(
            f"expected one lr per param group ({len(optimizer.param_groups)} groups), "
            f"received {len(lrs)} lrs"
        )
    for group, lr in zip(optimizer.param_groups, lrs):
        if isinstance(group["lr"], torch.Tensor):
            group["lr"].fill_(lr)
        else:
            group["lr"] = float(lr)


def group_ratios(optimizer: torch.optim.Optimizer) -> list[float]:
    """Each group's lr relative to the first group's, so one scalar lr can drive them all."""
    lrs = group_lrs(optimizer)
    return [1.0 if lrs[0] == 0 else lr / lrs[0] for lr in lrs]


def set_lr(optimizer: torch.optim.Optimizer, lr: float, ratios: Sequence[float]) -> None:
    """Set the first group to ``lr`` and the others to ``lr`` times their ratio."""
    set_group_lrs(optimizer, [lr * r for r in ratios])
