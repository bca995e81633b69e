"""ReportCallback reports what fit() logged, and the study's pruner stops a real fit."""

import re

import pytest
import torch

import kiln
from kiln import layers as L
from kiln.callbacks import Callback
from kiln.tune import (
    BasePruner,
    Float,
    Random,
    ReportCallback,
    Study,
    SuccessiveHalving,
    TrialPruned,
    TrialState,
)


def _data(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(256, 8, generator=g)
    return x, (x[:, 0] + x[:, 1] > 0).long()


class _Recorder(Callback):
    def __init__(self):
        self.begun, self.errors = [], []

    def on_epoch_begin(self, trainer, epoch):
        self.begun.append(epoch)

    def on_train_error(self, trainer, error):
        self.errors.append(type(error).__name__)


def _fit(trial, epochs, callbacks, lr=0.05):
    torch.manual_seed(0)
    (x, y), (xv, yv) = _data(0), _data(1)
    model = kiln.Sequential([kiln.Input((8,)), L.Dense(16, activation="relu"), L.Dense(2)])
    model.compile(optimizer="adam", loss="cross_entropy", metrics=["accuracy"], lr=lr,
                  device="cpu")  # fmt: skip
    cb = ReportCallback(trial, {"acc": "val_accuracy", "ms": 1.5})
    return model.fit(x, y, epochs=epochs, batch_size=64, validation_data=(xv, yv), verbose=0,
                     track=False, callbacks=[cb, *callbacks])  # fmt: skip


def _study(pruner=None) -> Study:
    return Study({"lr": Float(1e-6, 0.1, log=True)}, {"acc": "max", "ms": "min"},
                 sampler=Random(0), pruner=pruner)  # fmt: skip


def test_every_epoch_is_reported_as_fit_logged_it():
    study, seen = _study(), {}

    def fn(trial):
        history = _fit(trial, 3, [])
        seen["acc"] = history.history["val_accuracy"]
        return {"acc": seen["acc"][-1], "ms": 1.5}

    study.optimize(fn, trials=1)
    trial = study.trials[0]
    assert trial.state is TrialState.COMPLETED
    assert trial.intermediate == {e + 1: {"acc": a, "ms": 1.5} for e, a in enumerate(seen["acc"])}


class _StopAt(BasePruner):
    def __init__(self, step):
        self.step = step

    def should_prune(self, study, trial, step):
        return step >= self.step


def test_a_prune_stops_fit_after_that_epoch_and_the_trial_is_recorded_pruned():
    study, recorder = _study(_StopAt(2)), _Recorder()
    study.optimize(lambda trial: _fit(trial, 5, [recorder]) and {"acc": 1.0, "ms": 1.5},
                   trials=1)  # fmt: skip
    trial = study.trials[0]
    assert trial.state is TrialState.PRUNED and sorted(trial.intermediate) == [1, 2]
    assert recorder.begun == [0, 1] and recorder.errors == ["TrialPruned"]


def test_successive_halving_stops_a_fit_that_learns_nothing():
    study = _study(SuccessiveHalving(min_step=1, reduction=4))
    for lr in (0.05, 0.03, 0.02):  # three learners reach step 1 first: too few to compare
        study.enqueue({"lr": lr})
        trial = study.ask()
        _fit(trial, 1, [], lr=lr)
        study.tell(trial, {"acc": trial.intermediate[1]["acc"], "ms": 1.5})
    study.enqueue({"lr": 1e-6})
    trial, recorder = study.ask(), _Recorder()
    with pytest.raises(TrialPruned):
        _fit(trial, 2, [recorder], lr=1e-6)
    assert recorder.begun == [0] and list(trial.intermediate) == [1]
    assert trial.intermediate[1]["acc"] < min(t.values["acc"] for t in study.completed())


def test_a_log_fit_does_not_write_is_named_with_those_it_does():
    trial = _study().ask()
    (x, y) = _data()
    model = kiln.Sequential([kiln.Input((8,)), L.Dense(2)])
    model.compile(optimizer="adam", loss="cross_entropy", metrics=["accuracy"], device="cpu")
    cb = ReportCallback(trial, {"acc": "val_accuracy"})
    with pytest.raises(ValueError, match=r"\['val_accuracy'\].*\['accuracy', 'loss'\]"):
        model.fit(x, y, epochs=1, verbose=0, track=False, callbacks=[cb])
    with pytest.raises(ValueError, match=re.escape("Received: {'acc': None}")):
        ReportCallback(trial, {"acc": None})
    with pytest.raises(ValueError, match="Received: 'val_accuracy'"):
        ReportCallback(trial, "val_accuracy")
