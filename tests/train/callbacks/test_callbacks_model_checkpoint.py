import os

import pytest
import torch

from kiln.train.callbacks import ModelCheckpoint

VAL_LOSS = [1.0, 0.8, 0.9, 0.7, 0.75]


def _logs(values=VAL_LOSS):
    return [{"loss": 2.0, "val_loss": v} for v in values]


def _files(folder):
    return sorted(p.name for p in folder.iterdir())


def test_every_epoch_with_formatted_names(fake, tmp_path):
    ckpt = ModelCheckpoint(tmp_path / "ckpt" / "{epoch:02d}-{val_loss:.3f}.kiln")
    fake.run(fake.Trainer(epochs=3), [ckpt], _logs())
    assert _files(tmp_path / "ckpt") == ["01-1.000.kiln", "02-0.800.kiln", "03-0.900.kiln"]
    # the fake loop fills the weights with the 0-based epoch index before epoch end
    assert torch.equal(
        fake.load_weight(tmp_path / "ckpt" / "03-0.900.kiln"), torch.full((2, 3), 2.0)
    )


def test_save_best_only_writes_improvements_only(fake, tmp_path):
    ckpt = ModelCheckpoint(tmp_path / "{epoch}-{val_loss}.kiln", save_best_only=True)
    fake.run(fake.Trainer(epochs=5), [ckpt], _logs())
    assert _files(tmp_path) == ["1-1.0.kiln", "2-0.8.kiln", "4-0.7.kiln"]
    assert ckpt.best == 0.7


def test_save_best_only_to_one_name_holds_the_best_model(fake, tmp_path):
    ckpt = ModelCheckpoint(tmp_path / "best.kiln", monitor="val_acc", save_best_only=True)
    fake.run(fake.Trainer(epochs=4), [ckpt], [{"val_acc": v} for v in [0.5, 0.7, 0.6, 0.65]])
    assert ckpt.mode == "max"
    assert torch.equal(fake.load_weight(tmp_path / "best.kiln"), torch.full((2, 3), 1.0))


def test_save_last_writes_every_epoch_next_to_the_checkpoints(fake, tmp_path):
    ckpt = ModelCheckpoint(tmp_path / "ck" / "{epoch}.kiln", save_best_only=True, save_last=True)
    fake.run(fake.Trainer(epochs=3), [ckpt], _logs([1.0, 0.5, 0.9]))
    assert _files(tmp_path / "ck") == ["1.kiln", "2.kiln", "last.kiln"]
    assert torch.equal(fake.load_weight(tmp_path / "ck" / "last.kiln"), torch.full((2, 3), 2.0))


def test_last_filepath(fake, tmp_path):
    ckpt = ModelCheckpoint(tmp_path / "a.kiln", last_filepath=tmp_path / "sub" / "final.kiln")
    fake.run(fake.Trainer(epochs=2), [ckpt], _logs())
    assert torch.equal(fake.load_weight(tmp_path / "sub" / "final.kiln"), torch.full((2, 3), 1.0))


def test_a_crash_mid_write_keeps_the_previous_file_and_no_temp(fake, tmp_path, monkeypatch):
    path = tmp_path / "model.kiln"
    ckpt = ModelCheckpoint(path)
    trainer = fake.Trainer(epochs=3)
    before = path.read_bytes() if path.exists() else None
    assert before is None

    def torn_save(self, p):
        with open(p, "wb") as f:
            f.write(b"half a checkpoint")
        raise OSError("disk full")

    real_save = fake.Model.save
    calls = []

    def save(self, p):
        calls.append(p)
        (real_save if len(calls) == 1 else torn_save)(self, p)

    monkeypatch.setattr(fake.Model, "save", save)
    with pytest.raises(OSError, match="disk full"):
        fake.run(trainer, [ckpt], _logs())
    assert _files(tmp_path) == ["model.kiln"]
    assert torch.equal(fake.load_weight(path), torch.full((2, 3), 0.0))  # epoch 1's model, whole
    assert all(os.path.dirname(p) == str(tmp_path) for p in calls)  # temp next to the target


def test_missing_format_field_names_the_available_ones(fake, tmp_path):
    ckpt = ModelCheckpoint(tmp_path / "{epoch}-{val_acc:.2f}.kiln")
    with pytest.raises(ValueError, match=r"\{val_acc\}.*available fields: loss, val_loss, epoch"):
        fake.run(fake.Trainer(epochs=1), [ckpt], _logs())


def test_save_freq_in_steps(fake, tmp_path):
    trainer = fake.Trainer(epochs=2, steps_per_epoch=4, log_every=2)
    ckpt = ModelCheckpoint(tmp_path / "{epoch}-{step}-{loss:.0f}.kiln", save_freq=3)
    fake.run(trainer, [ckpt], _logs())
    # steps 3 and 6; the name uses the latest synchronized step logs (loss = step, every 2 steps)
    assert _files(tmp_path) == ["1-3-2.kiln", "2-6-6.kiln"]


def test_only_the_main_process_writes(fake, tmp_path):
    ckpt = ModelCheckpoint(tmp_path / "{epoch}.kiln", save_best_only=True, save_last=True)
    fake.run(fake.Trainer(epochs=3, is_main_process=False), [ckpt], _logs())
    assert _files(tmp_path) == []
    assert ckpt.best == 0.8  # the best value is still tracked everywhere


def test_state_dict_round_trip_keeps_the_best_value(fake, tmp_path):
    logs = _logs([1.0, 0.5, 0.7, 0.6, 0.4])
    first = fake.Trainer(epochs=5)
    ck_first = ModelCheckpoint(tmp_path / "{epoch}.kiln", save_best_only=True)
    fake.run(first, [ck_first], logs, stop_at_step=2 * first.steps_per_epoch + 1)
    second = fake.Trainer(epochs=5)
    ck_second = ModelCheckpoint(tmp_path / "{epoch}.kiln", save_best_only=True)
    fake.resume(first, [ck_first], second, [ck_second])
    fake.run(second, [ck_second], logs)
    assert _files(tmp_path) == ["1.kiln", "2.kiln", "5.kiln"]  # 0.7 and 0.6 do not beat 0.5


def test_bad_save_freq_states_the_rule():
    with pytest.raises(ValueError, match="save_freq=0"):
        ModelCheckpoint("x.kiln", save_freq=0)
