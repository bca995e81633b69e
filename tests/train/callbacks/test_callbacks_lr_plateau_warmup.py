import math

import pytest
import torch

from kiln.train.callbacks import ReduceLROnPlateau, WarmupCosine, warmup_cosine


def _plateau(fake, values, key="val_loss", groups=(0.1,), **kwargs):
    trainer = fake.Trainer(epochs=len(values), steps_per_epoch=2)
    if len(groups) == 2:
        trainer.optimizer = torch.optim.SGD(
            [
                {"params": [trainer.model.weight], "lr": groups[0]},
                {"params": [trainer.model.bias], "lr": groups[1]},
            ]
        )
    cb = ReduceLROnPlateau(monitor=key, **kwargs)
    fake.run(trainer, [cb], [{key: v} for v in values])
    return trainer, cb


def test_plateau_reduces_with_cooldown_down_to_min_lr(fake):
    # hand trace of Keras's ReduceLROnPlateau(factor=.5, patience=1, cooldown=2, min_lr=.02):
    # reduce after epochs 1, 3, 5 (cooldown skips one epoch), the floor stops the fourth cut
    trainer, _ = _plateau(
        fake, [1.0] * 8, factor=0.5, patience=1, cooldown=2, min_lr=0.02, min_delta=0.0
    )
    assert trainer.history["lr"] == pytest.approx([0.1, 0.1, 0.05, 0.05, 0.025, 0.025, 0.02, 0.02])
    assert trainer.optimizer.param_groups[0]["lr"] == 0.02


def test_plateau_patience_and_min_delta(fake):
    # 0.99995 is not an improvement by more than 1e-4; 0.5 is
    values = [1.0, 0.99995, 0.99994, 0.5, 0.6, 0.7, 0.8]
    trainer, cb = _plateau(fake, values, factor=0.1, patience=2)
    assert trainer.history["lr"] == pytest.approx([0.1, 0.1, 0.1, 0.01, 0.01, 0.01, 0.001])
    assert cb.best == 0.5


def test_plateau_maximizes_accuracy_and_scales_every_group(fake):
    trainer, cb = _plateau(
        fake, [0.5, 0.5, 0.6, 0.6], key="val_accuracy", groups=(0.1, 0.01), factor=0.5, patience=1
    )
    assert cb.mode == "max"
    assert [g["lr"] for g in trainer.optimizer.param_groups] == pytest.approx([0.025, 0.0025])


def test_plateau_resume_matches_an_uninterrupted_run(fake):
    values = [1.0, 0.9, 0.95, 0.96, 0.97, 0.8, 0.85, 0.86, 0.87, 0.88]
    kwargs = {"factor": 0.5, "patience": 2, "cooldown": 2}
    whole, _ = _plateau(fake, values, **kwargs)
    logs = [{"val_loss": v} for v in values]
    first = fake.Trainer(epochs=len(values), steps_per_epoch=2)
    cb_first = ReduceLROnPlateau(**kwargs)
    fake.run(first, [cb_first], logs, stop_at_step=2 * 4 + 1)  # killed during epoch 4, in cooldown
    assert cb_first.cooldown_counter > 0
    second = fake.Trainer(epochs=len(values), steps_per_epoch=2)
    cb_second = ReduceLROnPlateau(**kwargs)
    fake.resume(first, [cb_first], second, [cb_second])
    fake.run(second, [cb_second], logs)
    assert second.history["lr"] == whole.history["lr"]
    assert len(set(whole.history["lr"])) == 3  # the run did reduce twice


def test_plateau_rejects_a_factor_of_one_or_more():
    with pytest.raises(ValueError, match=r"0 < factor < 1, received factor=1.5"):
        ReduceLROnPlateau(factor=1.5)


def _closed_form(step, peak, warmup, total, floor):
    """The lr of the step-th step (1-based): linear to peak, then half a cosine to floor."""
    if step <= warmup:
        return peak * step / warmup
    t = (step - warmup) / (total - warmup)
    return floor + (peak - floor) * (1 + math.cos(math.pi * t)) / 2


def test_warmup_cosine_matches_the_closed_form(fake):
    trainer = fake.Trainer(epochs=6, steps_per_epoch=5)  # 30 steps
    fake.run(trainer, [WarmupCosine(warmup_steps=10, min_lr=0.001)], [{"loss": 1.0}] * 6)
    seen = [lrs[0] for lrs in trainer.lrs_seen]
    assert len(seen) == 30
    assert seen[0] == pytest.approx(0.1 / 10)  # first step
    assert seen[9] == pytest.approx(0.1)  # end of warmup
    assert seen[19] == pytest.approx((0.1 + 0.001) / 2)  # halfway through the decay
    assert seen[29] == pytest.approx(0.001)  # last step
    assert seen == pytest.approx([_closed_form(s, 0.1, 10, 30, 0.001) for s in range(1, 31)])
    assert trainer.history["lr"] == pytest.approx(seen[4::5])


def test_warmup_cosine_explicit_total_and_groups(fake):
    trainer = fake.Trainer(epochs=2, steps_per_epoch=5)
    trainer.optimizer = torch.optim.SGD(
        [{"params": [trainer.model.weight], "lr": 1.0}, {"params": [trainer.model.bias], "lr": 0.5}]
    )
    fake.run(trainer, [WarmupCosine(warmup_steps=0, total_steps=20)], [{"loss": 1.0}] * 2)
    for s, lrs in enumerate(trainer.lrs_seen, start=1):
        assert lrs == pytest.approx([warmup_cosine(s, 1.0, 0, 20), warmup_cosine(s, 0.5, 0, 20)])
    assert trainer.lrs_seen[-1][0] == pytest.approx(_closed_form(10, 1.0, 0, 20, 0.0)) == 0.5


@pytest.mark.parametrize("kill_at", [10, 13])
def test_warmup_cosine_resume_matches_an_uninterrupted_run(fake, kill_at):
    logs = [{"loss": 1.0}] * 6
    whole = fake.Trainer(epochs=6, steps_per_epoch=5)
    fake.run(whole, [WarmupCosine(8, min_lr=0.01)], logs)
    first = fake.Trainer(epochs=6, steps_per_epoch=5)
    cb_first = [WarmupCosine(8, min_lr=0.01)]
    fake.run(first, cb_first, logs, stop_at_step=kill_at)
    second = fake.Trainer(epochs=6, steps_per_epoch=5)
    cb_second = [WarmupCosine(8, min_lr=0.01)]
    fake.resume(first, cb_first, second, cb_second)
    fake.run(second, cb_second, logs)
    assert second.lrs_seen == whole.lrs_seen


def test_warmup_cosine_states_its_rules(fake):
    with pytest.raises(ValueError, match=r"total_steps=5, warmup_steps=10"):
        WarmupCosine(10, total_steps=5)
    trainer = fake.Trainer(epochs=2, steps_per_epoch=0)
    with pytest.raises(ValueError, match=r"needs total_steps.*steps_per_epoch=0"):
        WarmupCosine(10).on_train_begin(trainer)
