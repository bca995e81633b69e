"""CSVLogger: one CSV row per epoch, flushed as it is written."""

from __future__ import annotations

import csv
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kiln.train._atomic import atomic_write
from kiln.train._callback import Callback, Logs

if TYPE_CHECKING:
    from kiln.train._trainer import Trainer


class CSVLogger(Callback):
    """Write ``epoch`` (1-based, as displayed) and the logs to ``filename``, a row per epoch.

    Columns are ``epoch`` then the log keys in the order they first appear. A key that first
    shows up in a later epoch (e.g. ``val_loss`` with ``validation_freq > 1``) adds a column:
    the file is rewritten once with the wider header, and earlier rows leave that cell empty
    (as do rows of epochs that lack a key). Floats are written with ``repr``, so they read back
    exactly. Each row is flushed to the file when its epoch ends.

    A fresh run truncates the file unless ``append``. A run resumed from a checkpoint (after
    ``load_state_dict``) continues the same file and first drops rows of epochs it is about to
    run again (written after the checkpoint, before the crash). Main process only.
    """

    def __init__(
        self, filename: str | os.PathLike[str], append: bool = False, separator: str = ","
    ) -> None:
        self.filename = Path(filename)
        self.append = append
        self.separator = separator
        self._columns: list[str] | None = None
        self._resumed = False
        self._resuming = False

    def on_train_begin(self, trainer: Trainer) -> None:
        self._columns = None
        self._resuming, self._resumed = self._resumed, False
        if trainer.is_main_process and not (self.append or self._resuming):
            self.filename.parent.mkdir(parents=True, exist_ok=True)
            self.filename.write_text("")

    def on_epoch_end(self, trainer: Trainer, epoch: int, logs: Logs) -> None:
        if not trainer.is_main_process:
            return
        row: dict[str, Any] = {"epoch": epoch + 1, **logs}
        if self._columns is None:  # first row of this run: adopt (and trim) what is on disk
            columns, rows = self._read()
            if self._resuming:
                rows = [r for r in rows if int(r["epoch"]) < epoch + 1]
            self._columns = columns
            self._rewrite(rows, row)
        elif any(k not in self._columns for k in row):
            self._rewrite(self._read()[1], row)
        else:
            with open(self.filename, "a", newline="") as f:
                self._writer(f).writerow(row)

    def _read(self) -> tuple[list[str], list[dict[str, str]]]:
        if not self.filename.exists() or self.filename.stat().st_size == 0:
            return [], []
        with open(self.filename, newline="") as f:
            reader = csv.DictReader(f, delimiter=self.separator)
            return list(reader.fieldnames or []), list(reader)

    def _rewrite(self, rows: list[dict[str, Any]], row: dict[str, Any]) -> None:
        columns = self._columns or ["epoch"]
        self._columns = columns + [k for k in row if k not in columns]

        def write(tmp: str) -> None:
            with open(tmp, "w", newline="") as f:
                writer = self._writer(f)
                writer.writeheader()
                writer.writerows([*rows, row])

        atomic_write(self.filename, write)

    def _writer(self, f: Any) -> csv.DictWriter[str]:
        return csv.DictWriter(f, self._columns or [], delimiter=self.separator, restval="")

    def state_dict(self) -> dict[str, Any]:
        return {"filename": str(self.filename)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._resumed = True
