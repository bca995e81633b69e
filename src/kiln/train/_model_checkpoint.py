"""ModelCheckpoint: save the model during training, every epoch, every N steps or on improvement."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from kiln.train._atomic import atomic_write
from kiln.train._callback import Callback, Logs
from kiln.train._monitor import Monitor

if TYPE_CHECKING:
    from kiln.train._trainer import Trainer


class ModelCheckpoint(Callback):
    """Save ``trainer.model`` with ``model.save(path)`` to ``filepath``.

    ``filepath`` may hold format fields filled from ``epoch`` (1-based, as displayed), ``step``
    (global optimizer steps done) and the logs, e.g. ``"ckpt/{epoch:02d}-{val_loss:.3f}.kiln"``.
    Folders are created; each file is written under a temporary name in the same folder and
    renamed, so a crash never leaves half a checkpoint.

    - ``save_freq="epoch"`` saves at each epoch end; an int ``N`` saves every ``N`` global steps,
      with the most recent step logs the trainer synchronized (logs arrive every ``log_every``
      steps, so ``N`` should be a multiple of it when the name or ``monitor`` uses metrics).
    - ``save_best_only`` saves only when ``monitor`` improves on the best value seen so far;
      a name without fields then always holds the best model.
    - ``save_last`` also writes ``last.kiln`` in the checkpoint's folder (or ``last_filepath``)
      at every epoch end, whether or not the epoch improved.

    Files are written on the main process only; every process tracks the best value.
    """

    def __init__(
        self,
        filepath: str | os.PathLike[str],
        monitor: str = "val_loss",
        mode: str = "auto",
        save_best_only: bool = False,
        save_last: bool = False,
        save_freq: Literal["epoch"] | int = "epoch",
        last_filepath: str | os.PathLike[str] | None = None,
    ) -> None:
        if save_freq != "epoch" and not (isinstance(save_freq, int) and save_freq > 0):
            raise ValueError(
                f"save_freq must be 'epoch' or a positive number of steps, received "
                f"save_freq={save_freq!r}"
            )
        self.filepath = os.fspath(filepath)
        self._monitor = Monitor("ModelCheckpoint", monitor, mode)
        self.monitor, self.mode = monitor, self._monitor.mode
        self.save_best_only = save_best_only
        self.save_last = save_last or last_filepath is not None
        self.last_filepath = None if last_filepath is None else os.fspath(last_filepath)
        self.save_freq = save_freq
        self.best = self._monitor.worst
        self.last_saved: Path | None = None
        self._saved_now = False  # whether this epoch's decision was to save (same on every rank)
        self._epoch = 0
        self._step_logs: Logs = {}
        self._resumed = False

    def on_train_begin(self, trainer: Trainer) -> None:
        if not self._resumed:
            self.best = self._monitor.worst
        self._resumed = False

    def on_epoch_begin(self, trainer: Trainer, epoch: int) -> None:
        self._epoch = epoch

    def on_batch_end(self, trainer: Trainer, step: int, logs: Logs | None) -> None:
        if logs is not None:
            self._step_logs = dict(logs)
        if self.save_freq != "epoch" and step % self.save_freq == 0:
            self._maybe_save(trainer, self._epoch, self._step_logs)

    def on_epoch_end(self, trainer: Trainer, epoch: int, logs: Logs) -> None:
        saved = self._maybe_save(trainer, epoch, logs) if self.save_freq == "epoch" else None
        if not self.save_last:
            return
        # every process takes the same branch: the logs are the same everywhere
        state = None if saved is not None or self._saved_now else _full_state(trainer)
        if trainer.is_main_process:
            last = self._last_path(trainer, epoch, logs)
            if saved is not None:  # the same bytes are on disk already: copy, don't re-serialize
                atomic_write(last, lambda tmp: shutil.copyfile(saved, tmp))
            else:
                atomic_write(last, _saver(trainer, state))

    def _maybe_save(self, trainer: Trainer, epoch: int, logs: Logs) -> Path | None:
        self._saved_now = False
        if self.save_best_only:
            current = self._monitor.read(logs)
            if current is None or not self._monitor.improved(current, self.best):
                return None
            self.best = current
        state = _full_state(trainer)  # on every process: a collective when the model is sharded
        self._saved_now = True
        if not trainer.is_main_process:
            return None
        self.last_saved = atomic_write(self._format(trainer, epoch, logs), _saver(trainer, state))
        return self.last_saved

    def _format(self, trainer: Trainer, epoch: int, logs: Logs) -> str:
        fields = {**logs, "epoch": epoch + 1, "step": trainer.step}
        try:
            return self.filepath.format(**fields)
        except (KeyError, IndexError) as e:
            raise ValueError(
                f"ModelCheckpoint filepath {self.filepath!r} uses the field {{{e.args[0]}}}, "
                f"which the logs lack; available fields: {', '.join(fields)}"
            ) from None

    def _last_path(self, trainer: Trainer, epoch: int, logs: Logs) -> str:
        if self.last_filepath is not None:
            return self.last_filepath
        folder = os.path.dirname(self.filepath)
        if "{" in folder:
            folder = os.path.dirname(self._format(trainer, epoch, logs))
        return os.path.join(folder, "last.kiln")

    def state_dict(self) -> dict[str, Any]:
        return {"best": self.best}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.best = state["best"]
        self._resumed = True


def _full_state(trainer: Trainer) -> dict[str, Any] | None:
    gather = getattr(trainer, "model_state_dict", None)
    return gather() if callable(gather) else None


def _saver(trainer: Trainer, state: dict[str, Any] | None) -> Callable[[str], object]:
    save = getattr(trainer.model, "save", None)
    if not callable(save):
        raise TypeError(
            "ModelCheckpoint saves with trainer.model.save(path), but "
            f"{type(trainer.model).__name__} has no save method; use a kiln model"
        )
    return save if state is None else lambda path: save(path, state_dict=state)
