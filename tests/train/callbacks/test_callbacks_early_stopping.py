import pytest
import torch

from kiln.train.callbacks import EarlyStopping


def _fit(fake, values, key="val_loss", **kwargs):
    trainer = fake.Trainer(epochs=len(values))
    es = EarlyStopping(monitor=key, **kwargs)
    fake.run(trainer, [es], [{"loss": 1.0, key: v} for v in values])
    return trainer, es


# (values, kwargs, epochs run, stopped_epoch): traced by hand through Keras 3's EarlyStopping
CASES = [
    ([1.0, 0.9, 0.95, 0.92, 0.8, 0.7], {"patience": 2}, 4, 3),
    ([1.0, 0.9, 0.8, 0.7], {"patience": 0}, 4, 0),
    ([1.0, 0.9, 0.9, 0.7], {"patience": 0}, 3, 2),
    ([1.0, 0.97, 0.96, 0.90], {"patience": 1, "min_delta": 0.05}, 2, 1),
    ([1.0, 0.97, 0.96, 0.90], {"patience": 1, "min_delta": -0.05}, 2, 1),  # abs(min_delta)
    # never beating the baseline: improvements don't reset the count, the first non-improving
    # epoch past patience stops
    ([1.0, 0.9, 0.95, 0.8, 0.7], {"patience": 2, "baseline": 0.5}, 3, 2),
    ([0.4, 0.45, 0.46, 0.47, 0.3], {"patience": 2, "baseline": 0.5}, 3, 2),
    ([5.0, 4.0, 3.0, 3.5, 3.0], {"patience": 0, "start_from_epoch": 2}, 4, 3),
    ([5.0, 6.0, 7.0, 8.0], {"patience": 0, "start_from_epoch": 2}, 4, 3),
]


@pytest.mark.parametrize(("values", "kwargs", "epochs_run", "stopped"), CASES)
def test_stops_at_the_keras_epoch(fake, values, kwargs, epochs_run, stopped):
    trainer, es = _fit(fake, values, **kwargs)
    assert len(trainer.history["val_loss"]) == epochs_run
    assert es.stopped_epoch == stopped
    assert trainer.stop_training == (stopped > 0)


def test_accuracy_is_maximized_in_auto_mode(fake):
    _, es = _fit(fake, [0.5, 0.6, 0.6, 0.7], key="val_accuracy", patience=0)
    assert es.mode == "max"
    assert es.stopped_epoch == 2 and es.best == 0.6 and es.best_epoch == 1


def test_restores_the_weights_of_the_best_epoch(fake):
    # the fake loop fills the weights with the epoch index: best epoch 1 -> weights all 1
    trainer, es = _fit(fake, [1.0, 0.5, 0.7, 0.8, 0.9], patience=2, restore_best_weights=True)
    assert es.stopped_epoch == 3 and es.best_epoch == 1
    assert torch.equal(trainer.model.weight, torch.full((2, 3), 1.0))
    assert es.best_weights["weight"].device.type == "cpu"


def test_best_weights_are_a_copy_taken_only_on_improvement(fake, monkeypatch):
    import kiln.train._early_stopping as module

    copies = []
    real_copy = module._cpu_copy
    monkeypatch.setattr(module, "_cpu_copy", lambda s: copies.append(1) or real_copy(s))
    trainer, es = _fit(fake, [1.0, 0.5, 0.7, 0.4, 0.9], patience=5, restore_best_weights=True)
    assert len(copies) == 3  # epochs 0, 1, 3
    with torch.no_grad():
        trainer.model.weight.fill_(-1)
    assert torch.equal(es.best_weights["weight"], torch.full((2, 3), 3.0))


def test_without_restore_the_last_weights_stay(fake):
    trainer, _ = _fit(fake, [1.0, 0.5, 0.7, 0.8], patience=1)
    assert torch.equal(trainer.model.weight, torch.full((2, 3), 2.0))


def test_missing_monitor_warns_once_with_available_keys(fake):
    trainer = fake.Trainer(epochs=3)
    es = EarlyStopping(monitor="val_loss", patience=0)
    with pytest.warns(UserWarning, match=r"'val_loss'.*available keys: loss, accuracy") as rec:
        fake.run(trainer, [es], [{"loss": 1.0, "accuracy": 0.5}] * 3)
    assert len([w for w in rec if "val_loss" in str(w.message)]) == 1
    assert not trainer.stop_training


def test_state_dict_round_trip_continues_the_same_decisions(fake):
    values = [1.0, 0.8, 0.85, 0.7, 0.75, 0.76, 0.77, 0.78]
    logs = [{"val_loss": v} for v in values]
    whole = fake.Trainer(epochs=len(values))
    es_whole = EarlyStopping(patience=2, restore_best_weights=True)
    fake.run(whole, [es_whole], logs)

    first = fake.Trainer(epochs=len(values))
    es_first = EarlyStopping(patience=2, restore_best_weights=True)
    fake.run(
        first, [es_first], logs, stop_at_step=5 * first.steps_per_epoch + 1
    )  # killed in epoch 5
    assert es_first.wait == 1
    second = fake.Trainer(epochs=len(values))
    es_second = EarlyStopping(patience=2, restore_best_weights=True)
    fake.resume(first, [es_first], second, [es_second])
    fake.run(second, [es_second], logs)

    assert es_second.stopped_epoch == es_whole.stopped_epoch == 5
    assert es_second.best_epoch == es_whole.best_epoch == 3
    assert second.history == whole.history
    assert torch.equal(second.model.weight, whole.model.weight)
    assert torch.equal(second.model.weight, torch.full((2, 3), 3.0))


def test_a_new_fit_starts_fresh(fake):
    _, es = _fit(fake, [1.0, 0.5, 0.7, 0.8], patience=1)
    assert es.stopped_epoch == 2
    again = fake.Trainer(epochs=3)
    fake.run(again, [es], [{"val_loss": v} for v in [3.0, 2.0, 1.0]])
    assert es.stopped_epoch == 0 and es.best == 1.0 and not again.stop_training


def test_bad_arguments_state_the_rule():
    with pytest.raises(ValueError, match=r"patience >= 0.*patience=-1"):
        EarlyStopping(patience=-1)
    with pytest.raises(ValueError, match=r"mode=.*'maximum'"):
        EarlyStopping(mode="maximum")
