"""The resume checkpoint: everything needed to continue a run bit for bit.

Weights, optimizer and scaler state, callback state (schedules, early stopping), history, the
position (epoch, step within it) and every random generator. Data order is a pure function of
(seed, epoch) in ``kiln.data``, so it needs no saving. Written atomically: a kill during the
write leaves the previous checkpoint whole.
"""

from __future__ import annotations

import os
import random
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

FORMAT = "kiln.resume/1"


def save_state(path: str | os.PathLike[str], state: dict[str, Any]) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {"format": FORMAT, **state, "rng": _rng_state()}
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(state, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def load_state(path: str | os.PathLike[str]) -> dict[str, Any]:
    try:
        state = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as e:  # a torn or foreign file: say which and what to do
        raise ValueError(
            f"Cannot resume from {path}: the file is not a readable kiln checkpoint ({e}). "
            "Delete it to start fresh, or pass another resume= path."
        ) from e
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise ValueError(f"{path} is not a kiln resume checkpoint (format {FORMAT} expected).")
    return state


def restore_rng(state: dict[str, Any]) -> None:
    rng = state["rng"]
    torch.set_rng_state(rng["torch"])
    if torch.cuda.is_available() and rng.get("cuda"):
        torch.cuda.set_rng_state_all(rng["cuda"])
    np.random.set_state(rng["numpy"])
    random.setstate(rng["python"])


def _rng_state() -> dict[str, Any]:
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": np.random.get_state(),
        "python": random.getstate(),
    }


def save_checkpoint(
    trainer: Any, path: str | os.PathLike[str], callbacks: list[Any], sharded: bool
) -> None:
    """Everything ``fit(resume=path)`` needs. A folder of torch.distributed.checkpoint shards for
    a sharded model (or where one is already), else one file written by rank 0."""
    state = {
        "scaler": trainer.scaler.state_dict() if trainer.scaler is not None else None,
        "callbacks": [cb.state_dict() for cb in callbacks],
        "history": trainer.history,
        "epoch": trainer.epoch,
        "step": trainer.step,
        "step_in_epoch": trainer.step_in_epoch,
        "samples_in_epoch": trainer.step_in_epoch * trainer.global_batch,
        "sums": trainer._sums.cpu(),
    }
    if sharded or Path(path).is_dir():
        from kiln.train._distributed import save_sharded

        save_sharded(path, trainer.model, trainer.optimizer, {"format": FORMAT, **state,
                                                               "rng": _rng_state()})  # fmt: skip
    elif trainer.is_main_process:
        model, optimizer = trainer.model.state_dict(), trainer.optimizer.state_dict()
        save_state(path, {"model": model, "optimizer": optimizer, **state})


def restore_checkpoint(trainer: Any, path: str | os.PathLike[str], callbacks: list[Any]) -> None:
    if Path(path).is_dir():
        from kiln.train._distributed import load_sharded

        state = load_sharded(path, trainer.model, trainer.optimizer)
    else:
        state = load_state(path)
        trainer.model.load_state_dict(state["model"])
        trainer.optimizer.load_state_dict(state["optimizer"])
    if trainer.scaler is not None and state["scaler"] is not None:
        trainer.scaler.load_state_dict(state["scaler"])
    for cb, cb_state in zip(callbacks, state["callbacks"], strict=False):
        cb.load_state_dict(cb_state)
    trainer.history = state["history"]
    trainer.epoch, trainer.step = state["epoch"], state["step"]
    # a mid-epoch position is kept as samples seen, so a run resumed with another number of
    # processes or batch size continues after them (exact when the global batches divide them)
    trainer.step_in_epoch = state["samples_in_epoch"] // trainer.global_batch
    trainer._sums.copy_(state["sums"])
    restore_rng(state)
