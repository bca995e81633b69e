"""ProgressBar: a rich progress bar per epoch and one summary line when it ends."""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import TYPE_CHECKING

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.text import Text

from kiln.train._callback import Callback, Logs

if TYPE_CHECKING:
    from kiln.train._trainer import Trainer


class ProgressBar(Callback):
    """Show training progress on ``console`` (default: a ``rich.console.Console`` on stdout).

    ``trainer.verbose`` picks the output: 0 nothing; 2 one summary line per epoch,
    ``Epoch 3/10 · 469/469 · 2.1s · loss 0.0412 · accuracy 0.9871 · val_loss ...``; 1 that line
    plus, while the epoch runs, a bar with steps done/total, elapsed time, ETA, throughput
    (steps/s, or samples/s when ``batch_size`` is given) and the latest synchronized metrics.

    While the step compiles behind the training (``Trainer.compiling_behind``), the bar and
    the epoch's summary line say so: those steps run the slower eager step.

    The bar is updated from ``on_batch_end`` with the step count only (no device sync) and the
    metrics when the trainer hands logs over; rich redraws it at its refresh rate. When the
    console is not a terminal (CI logs, files) rich draws no live bar, so only the summary lines
    appear; in Jupyter the bar is an output widget (needs ``ipywidgets``). Main process only.
    """

    def __init__(self, console: Console | None = None, batch_size: int | None = None) -> None:
        self.console = console
        self.batch_size = batch_size
        self._progress: Progress | None = None
        self._task: TaskID | None = None
        self._verbose = 0
        self._first_step = 0
        self._done = 0
        self._started = 0.0
        self._behind = False  # some of this epoch's steps ran while the step compiled

    def on_train_begin(self, trainer: Trainer) -> None:
        self._verbose = trainer.verbose if trainer.is_main_process else 0
        if self._verbose and self.console is None:
            self.console = Console()
        if self._verbose == 1 and self.console is not None and not _live(self.console):
            self._verbose = 2  # rich draws no bar there, and stopping one prints a blank line

    def on_epoch_begin(self, trainer: Trainer, epoch: int) -> None:
        # a run resumed mid-epoch starts part-way: count from the epoch's first step
        self._first_step = trainer.step - trainer.step_in_epoch
        self._done, self._started = trainer.step - self._first_step, time.perf_counter()
        self._behind = _compiling(trainer)
        if self._verbose != 1:
            return
        self._progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TextColumn("<"),
            TimeRemainingColumn(),
            _Throughput(self.batch_size),
            TextColumn("{task.fields[metrics]}", markup=False),
            console=self.console,
            transient=True,
        )
        self._task = self._progress.add_task(
            _describe(trainer, epoch), total=trainer.steps_per_epoch or None,
            completed=self._done, metrics="",
        )  # fmt: skip
        self._progress.start()

    def on_batch_end(self, trainer: Trainer, step: int, logs: Logs | None) -> None:
        self._done = step - self._first_step
        self._behind = self._behind or _compiling(trainer)
        if self._progress is None or self._task is None:
            return
        description = _describe(trainer, trainer.epoch)
        if logs is None:
            self._progress.update(self._task, completed=self._done, description=description)
        else:
            self._progress.update(self._task, completed=self._done, description=description,
                                  metrics=format_logs(logs))  # fmt: skip

    def on_epoch_end(self, trainer: Trainer, epoch: int, logs: Logs) -> None:
        self._stop()
        if not self._verbose or self.console is None:
            return
        total = f"/{trainer.steps_per_epoch}" if trainer.steps_per_epoch else ""
        parts = [
            f"Epoch {epoch + 1}/{trainer.epochs}",
            f"{self._done}{total}",
            format_seconds(time.perf_counter() - self._started),
        ]
        if logs:
            parts.append(format_logs(logs))
        if self._behind:
            parts.append(BEHIND)
        self.console.print(Text(" · ".join(parts)), highlight=False, soft_wrap=True)

    def on_train_end(self, trainer: Trainer, logs: Logs) -> None:
        self._stop()  # training stopped mid-epoch

    def _stop(self) -> None:
        if self._progress is not None:
            self._progress.stop()
        self._progress = self._task = None


BEHIND = "eager while the step compiled"


def _compiling(trainer: Trainer) -> bool:
    return bool(getattr(trainer, "compiling_behind", False))


def _describe(trainer: Trainer, epoch: int) -> str:
    compiling = " (compiling)" if _compiling(trainer) else ""
    return f"Epoch {epoch + 1}/{trainer.epochs}{compiling}"


class _Throughput(ProgressColumn):
    def __init__(self, batch_size: int | None) -> None:
        super().__init__()
        self.batch_size = batch_size

    def render(self, task: Task) -> Text:
        if not task.speed:
            return Text("")
        if self.batch_size:
            return Text(f"{task.speed * self.batch_size:,.0f} samples/s")
        return Text(f"{task.speed:.1f} steps/s")


def _live(console: Console) -> bool:
    return console.is_jupyter or (console.is_terminal and not console.is_dumb_terminal)


def format_logs(logs: Mapping[str, float]) -> str:
    """``loss 0.0412 · accuracy 0.9871``: 4 decimals, or scientific for tiny/huge values."""
    return " · ".join(f"{name} {format_value(value)}" for name, value in logs.items())


def format_value(value: float) -> str:
    if value == 0 or 1e-3 <= abs(value) < 1e5:
        return f"{value:.4f}"
    return f"{value:.3e}"


def format_seconds(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(round(seconds), 60)
    return f"{minutes}m {secs:02d}s" if minutes < 60 else f"{minutes // 60}h {minutes % 60:02d}m"
