"""TrackingCallback records a real fit: config, system info, step and epoch metrics, status."""

from __future__ import annotations

import pytest
import torch

import kiln
from kiln import layers as L
from kiln.track import Store, TrackingCallback


def _model() -> kiln.Sequential:
    model = kiln.Sequential([kiln.Input((8,)), L.Dense(16, activation="relu"), L.Dense(2)])
    model.compile(optimizer="adam", loss="cross_entropy", metrics=["accuracy"], log_every=4,
                  device="cpu")  # fmt: skip
    return model


def test_fit_is_recorded(tmp_path):
    x, y = torch.randn(256, 8), torch.randint(0, 2, (256,))
    store = Store(tmp_path / "kiln.db")
    callback = TrackingCallback(store, name="tiny", config={"note": "test"})
    history = _model().fit(x, y, epochs=2, batch_size=32, verbose=0, callbacks=[callback],
                           validation_data=(x[:64], y[:64]))  # fmt: skip
    [run] = store.runs()
    assert (run.name, run.status) == ("tiny", "finished")
    assert run.config["note"] == "test" and run.config["optimizer"] == "Adam"
    assert run.config["epochs"] == 2 and run.config["steps_per_epoch"] == 8
    assert run.config["loss"] == "cross_entropy" and isinstance(run.config["lr"], float)

    assert run.system["torch"] == torch.__version__ and "python" in run.system
    series = store.metrics(run.id)
    assert series["loss"].step == [4, 8, 12, 16]  # every log_every steps
    assert series["epoch_loss"].step == [8, 16] and series["epoch_loss"].epoch == [0, 1]
    assert series["epoch_val_loss"].value == pytest.approx(history.history["val_loss"])
    assert run.summary["epoch_loss"] == pytest.approx(history.history["loss"][-1])


def test_default_run_name_is_the_model_name():
    model = kiln.zoo.create_model("lenet5", augment=False)
    model.compile(loss="cross_entropy", device="cpu")
    model.fit(torch.rand(64, 1, 28, 28), torch.randint(0, 10, (64,)), batch_size=32, verbose=0)
    [run] = kiln.track.Store().runs()  # the test's own $KILN_STORE
    assert run.name == "lenet5" and run.config["model"] == "lenet5"


def test_unreachable_store_leaves_training_untracked(tmp_path):
    x, y = torch.randn(64, 8), torch.randint(0, 2, (64,))
    bad = "postgresql://nobody@127.0.0.1:1/none?connect_timeout=1"
    with pytest.warns(RuntimeWarning, match="training goes on untracked"):
        history = _model().fit(x, y, epochs=1, batch_size=32, verbose=0,
                               callbacks=[TrackingCallback(bad)])  # fmt: skip
    assert len(history.history["loss"]) == 1


def test_resumed_training_continues_the_run(tmp_path):
    x, y = torch.randn(64, 8), torch.randint(0, 2, (64,))
    store = Store(tmp_path / "kiln.db")
    first = TrackingCallback(store)
    _model().fit(x, y, epochs=1, batch_size=32, verbose=0, callbacks=[first])
    again = TrackingCallback(store)
    again.load_state_dict(first.state_dict())
    _model().fit(x, y, epochs=1, batch_size=32, verbose=0, callbacks=[again])
    [run] = store.runs()
    assert run.status == "finished" and len(store.metrics(run.id)["epoch_loss"].step) == 2
