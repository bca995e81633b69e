"""Fixtures for callback tests: ``fake``, a stand-in trainer with the attributes of the callback
contract, and a loop that calls the hooks in the order ``kiln.train._trainer.Trainer`` does
(resume included). Fixtures rather than a helper module: the suite runs with
``--import-mode=importlib``, where test files cannot import siblings."""

from __future__ import annotations

import io
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import pytest
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from kiln.train._callback import Callback


class TinyModel(nn.Linear):
    """nn.Linear with a single-file ``save(path)``, like a kiln model."""

    def __init__(self) -> None:
        super().__init__(3, 2)

    def save(self, path: str) -> None:
        save_file({k: v.contiguous() for k, v in self.state_dict().items()}, path)


def load_weight(path: Any) -> torch.Tensor:
    return load_file(str(path))["weight"]


@dataclass
class FakeTrainer:
    model: TinyModel = field(default_factory=TinyModel)
    optimizer: torch.optim.Optimizer | None = None
    epochs: int = 5
    steps_per_epoch: int = 4
    log_every: int = 2
    epoch: int = 0
    step: int = 0
    stop_training: bool = False
    history: dict[str, list[float]] = field(default_factory=dict)
    is_main_process: bool = True
    verbose: int = 1
    lrs_seen: list[list[float]] = field(default_factory=list)  # lr of each group, each step

    @property
    def step_in_epoch(self) -> int:
        return self.step - self.epoch * self.steps_per_epoch

    def __post_init__(self) -> None:
        if self.optimizer is None:
            self.optimizer = torch.optim.SGD(self.model.parameters(), lr=0.1)


def run(
    trainer: FakeTrainer,
    callbacks: Sequence[Callback],
    epoch_logs: Callable[[int], dict[str, float]] | Sequence[dict[str, float]],
    stop_at_step: int | None = None,
) -> None:
    """Train from ``trainer.epoch``/``trainer.step`` to ``trainer.epochs``.

    Each epoch fills the weights with the epoch index (so saved weights name their epoch) and
    ends with ``epoch_logs[epoch]``; batch logs ``{"loss": step}`` arrive every ``log_every``
    steps. ``stop_at_step`` simulates a kill right after that step's callbacks.
    """
    logs_of = epoch_logs if callable(epoch_logs) else epoch_logs.__getitem__
    for cb in callbacks:
        cb.on_train_begin(trainer)
    logs: dict[str, float] = {}
    while trainer.epoch < trainer.epochs and not trainer.stop_training:
        epoch = trainer.epoch
        for cb in callbacks:
            cb.on_epoch_begin(trainer, epoch)
        while trainer.step < (epoch + 1) * trainer.steps_per_epoch:
            trainer.lrs_seen.append([float(g["lr"]) for g in trainer.optimizer.param_groups])
            trainer.optimizer.step()
            trainer.step += 1
            batch = {"loss": float(trainer.step)} if trainer.step % trainer.log_every == 0 else None
            for cb in callbacks:
                cb.on_batch_end(trainer, trainer.step, batch)
            if trainer.step == stop_at_step:
                return
        with torch.no_grad():
            trainer.model.weight.fill_(epoch)
        logs = dict(logs_of(epoch))
        trainer.epoch = epoch + 1
        for cb in callbacks:
            cb.on_epoch_end(trainer, epoch, logs)
        for key, value in logs.items():
            trainer.history.setdefault(key, []).append(value)
    for cb in callbacks:
        cb.on_train_end(trainer, logs)


def resume(
    old: FakeTrainer,
    old_callbacks: Sequence[Callback],
    new: FakeTrainer,
    new_callbacks: Sequence[Callback],
) -> None:
    """Carry the resume state from ``old`` to a freshly built ``new``, as the trainer does."""
    new.model.load_state_dict(old.model.state_dict())
    new.optimizer.load_state_dict(old.optimizer.state_dict())
    states = _through_file([cb.state_dict() for cb in old_callbacks])
    for cb, state in zip(new_callbacks, states, strict=True):
        cb.load_state_dict(state)
    new.epoch, new.step, new.history = old.epoch, old.step, old.history
    new.lrs_seen = list(old.lrs_seen)


def _through_file(obj: Any) -> Any:
    """What the resume checkpoint does to callback state: torch.save, then torch.load."""
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    buffer.seek(0)
    return torch.load(buffer, weights_only=False)


@pytest.fixture
def fake() -> SimpleNamespace:
    return SimpleNamespace(
        Trainer=FakeTrainer, Model=TinyModel, run=run, resume=resume, load_weight=load_weight
    )
