"""JSONLogger: one JSON object per epoch (JSON Lines), flushed as it is written."""

from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kiln.train._atomic import atomic_write
from kiln.train._callback import Callback, Logs

if TYPE_CHECKING:
    from kiln.train._trainer import Trainer


class JSONLogger(Callback):
    """Append ``{"epoch": .., "step": .., "time": .., **logs}`` as one line per epoch.

    ``epoch`` is 1-based (as displayed), ``step`` the global optimizer steps done, ``time`` the
    UNIX time at the end of the epoch. NaN and infinite values are written as ``null`` so every
    line is strict JSON. Each line is flushed when its epoch ends.

    A fresh run truncates the file unless ``append``. A run resumed from a checkpoint (after
    ``load_state_dict``) continues the same file and first drops lines of epochs it is about to
    run again. Main process only.
    """

    def __init__(self, filename: str | os.PathLike[str], append: bool = False) -> None:
        self.filename = Path(filename)
        self.append = append
        self._resumed = False
        self._resuming = False  # until the first line of a resumed run is written

    def on_train_begin(self, trainer: Trainer) -> None:
        self._resuming, self._resumed = self._resumed, False
        if trainer.is_main_process and not (self.append or self._resuming):
            self.filename.parent.mkdir(parents=True, exist_ok=True)
            self.filename.write_text("")

    def on_epoch_end(self, trainer: Trainer, epoch: int, logs: Logs) -> None:
        if not trainer.is_main_process:
            return
        record = {"epoch": epoch + 1, "step": trainer.step, "time": time.time(), **logs}
        line = json.dumps({k: _finite_or_none(v) for k, v in record.items()}) + "\n"
        if self._resuming:
            self._drop_from(epoch + 1)
            self._resuming = False
        self.filename.parent.mkdir(parents=True, exist_ok=True)
        with open(self.filename, "a") as f:
            f.write(line)

    def _drop_from(self, first_epoch: int) -> None:
        """Drop lines of epochs >= ``first_epoch`` (written after the checkpoint we resume from)."""
        if not self.filename.exists():
            return
        lines = self.filename.read_text().splitlines(keepends=True)
        kept = [ln for ln in lines if _epoch_of(ln) < first_epoch]
        if len(kept) != len(lines):
            atomic_write(self.filename, lambda tmp: Path(tmp).write_text("".join(kept)))

    def state_dict(self) -> dict[str, Any]:
        return {"filename": str(self.filename)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._resumed = True


def _epoch_of(line: str) -> float:
    """The epoch of a line; a blank or torn line (a crash mid-write) counts as never written."""
    try:
        return json.loads(line)["epoch"]
    except (ValueError, KeyError, TypeError):
        return math.inf


def _finite_or_none(value: Any) -> Any:
    return None if isinstance(value, float) and not math.isfinite(value) else value
