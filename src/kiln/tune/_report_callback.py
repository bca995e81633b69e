"""`ReportCallback`: early stopping of a `fit` by the study's pruner."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from kiln.train._callback import Callback, Logs
from kiln.tune._trial import Trial

if TYPE_CHECKING:
    from kiln.train._trainer import Trainer


class ReportCallback(Callback):
    """Report each epoch's metrics to `trial`, so that the study's pruner can stop the fit.

    `metrics` maps each metric the study knows to the epoch log that holds it, or to a number
    that is fixed for the whole training (a latency measured beforehand, a parameter count):
    a multi-objective pruner compares trials on every objective at once::

        report = ReportCallback(trial, {"accuracy": "val_accuracy", "latency_ms": 0.42})
        model.fit(x, y, epochs=8, validation_data=(xt, yt), callbacks=[report])

    At the end of epoch `e` (0-based) it calls `trial.report(e + 1, values)`: the step is the
    number of epochs done, so `SuccessiveHalving(min_step=1)` first compares trials after one
    epoch. When the pruner says stop, `TrialPruned` propagates out of `fit` (its callbacks get
    `on_train_error`, as for any exception that ends training), and `Study.optimize` records
    the trial as pruned. Use it in single-process fits (not under `kiln launch`): every process
    of a distributed fit would report.
    """

    def __init__(self, trial: Trial, metrics: Mapping[str, str | float]) -> None:
        if not isinstance(metrics, Mapping) or not metrics:
            raise ValueError('metrics maps study metrics to epoch logs or numbers, e.g. '
                             f'{{"accuracy": "val_accuracy"}}. Received: {metrics!r}')  # fmt: skip
        bad = {k: v for k, v in metrics.items() if not isinstance(v, str | int | float)}
        if bad:
            raise ValueError(f"Each metric maps to a log name (str) or a number. Received: {bad}")
        self.trial, self.metrics = trial, dict(metrics)

    def on_epoch_end(self, trainer: Trainer, epoch: int, logs: Logs) -> None:
        names = [v for v in self.metrics.values() if isinstance(v, str)]
        if missing := [n for n in names if n not in logs]:
            raise ValueError(
                f"ReportCallback reads {missing} from the epoch logs, which hold {sorted(logs)}. "
                "Name a log that fit() writes (val_* needs validation_data)."
            )
        values = {m: logs[v] if isinstance(v, str) else float(v) for m, v in self.metrics.items()}
        self.trial.report(epoch + 1, values)
