import math

import pytest
import torch
from torch.optim import lr_scheduler as torch_lr

from kiln.train.callbacks import LearningRateScheduler

EPOCHS, STEPS = 4, 5
LOGS = [{"loss": 1.0}] * EPOCHS


def _trainer(fake, groups=(0.1,)):
    trainer = fake.Trainer(epochs=EPOCHS, steps_per_epoch=STEPS)
    weight, bias = trainer.model.weight, trainer.model.bias
    params = [[weight, bias]] if len(groups) == 1 else [[weight], [bias]]
    trainer.optimizer = torch.optim.SGD(
        [{"params": p, "lr": lr} for p, lr in zip(params, groups, strict=True)], lr=groups[0]
    )
    return trainer


def _per_epoch(trainer):
    return [trainer.lrs_seen[e * STEPS][0] for e in range(EPOCHS)]


def _reference(make_scheduler, per):
    """The lr of every step when the same torch scheduler drives a separate optimizer."""
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1)
    sched = make_scheduler(opt)
    lrs = []
    for _ in range(EPOCHS):
        for _ in range(STEPS):
            lrs.append(opt.param_groups[0]["lr"])
            opt.step()
            if per == "step":
                sched.step()
        if per == "epoch":
            sched.step()
    return lrs


def test_epoch_function(fake):
    trainer = _trainer(fake)
    fake.run(trainer, [LearningRateScheduler(lambda epoch: 0.1 / (epoch + 1))], LOGS)
    assert _per_epoch(trainer) == [0.1 / (e + 1) for e in range(EPOCHS)]
    assert trainer.history["lr"] == [0.1 / (e + 1) for e in range(EPOCHS)]


def test_epoch_function_of_the_current_lr(fake):
    def halve(epoch, lr):
        return lr if epoch == 0 else lr * 0.5

    trainer = _trainer(fake)
    fake.run(trainer, [LearningRateScheduler(halve)], LOGS)
    assert _per_epoch(trainer) == [0.1, 0.05, 0.025, 0.0125]


def test_step_function(fake):
    trainer = _trainer(fake)
    fake.run(trainer, [LearningRateScheduler(lambda step: 1.0 / (step + 1), per="step")], LOGS)
    assert [lrs[0] for lrs in trainer.lrs_seen] == [1.0 / (s + 1) for s in range(EPOCHS * STEPS)]
    # the epoch logs hold the lr of the epoch's last step
    assert trainer.history["lr"] == [1.0 / ((e + 1) * STEPS) for e in range(EPOCHS)]


def test_param_groups_keep_their_ratio(fake):
    trainer = _trainer(fake, groups=(0.1, 0.01))
    fake.run(trainer, [LearningRateScheduler(lambda epoch: 1.0 * 2**-epoch)], LOGS)
    assert trainer.lrs_seen[-1] == pytest.approx([0.125, 0.0125])


@pytest.mark.parametrize("per", ["epoch", "step"])
@pytest.mark.parametrize(
    "make",
    [
        lambda opt: torch_lr.StepLR(opt, step_size=2, gamma=0.5),
        lambda opt: torch_lr.CosineAnnealingLR(opt, T_max=7, eta_min=0.001),
        lambda opt: torch_lr.OneCycleLR(opt, max_lr=1.0, total_steps=EPOCHS * STEPS + 1),
    ],
    ids=["step", "cosine", "onecycle"],
)
def test_torch_scheduler_instance_and_factory_match_torch(fake, make, per):
    expected = _reference(make, per)
    factory_trainer = _trainer(fake)
    fake.run(factory_trainer, [LearningRateScheduler(lambda optimizer: make(optimizer), per)], LOGS)
    instance_trainer = _trainer(fake)
    fake.run(instance_trainer, [LearningRateScheduler(make(instance_trainer.optimizer), per)], LOGS)
    for trainer in (factory_trainer, instance_trainer):
        assert [lrs[0] for lrs in trainer.lrs_seen] == pytest.approx(expected, rel=1e-12)
    if per == "epoch":
        assert factory_trainer.history["lr"] == pytest.approx(expected[::STEPS], rel=1e-12)


def _schedules():
    return {
        "epoch_fn_lr": (lambda epoch, lr: lr * 0.9 if epoch else lr, "epoch"),
        "step_fn_lr": (lambda step, lr: lr * 0.9 if step else 0.2, "step"),
        "step_fn": (lambda step: math.cos(step / 7), "step"),
        "factory_step": (lambda optimizer: torch_lr.ExponentialLR(optimizer, 0.8), "step"),
        "factory_epoch": (
            lambda optimizer: torch_lr.LambdaLR(optimizer, lambda e: 1 / (e + 1)),
            "epoch",
        ),
    }


@pytest.mark.parametrize("name", list(_schedules()))
@pytest.mark.parametrize("kill_at", [2 * STEPS, 2 * STEPS + 3])  # epoch boundary, mid-epoch
def test_resume_continues_the_schedule_exactly(fake, name, kill_at):
    schedule, per = _schedules()[name]
    whole = _trainer(fake, groups=(0.1, 0.05))
    fake.run(whole, [LearningRateScheduler(schedule, per)], LOGS)

    first = _trainer(fake, groups=(0.1, 0.05))
    cb_first = [LearningRateScheduler(schedule, per)]
    fake.run(first, cb_first, LOGS, stop_at_step=kill_at)
    second = _trainer(fake, groups=(0.1, 0.05))
    cb_second = [LearningRateScheduler(schedule, per)]
    fake.resume(first, cb_first, second, cb_second)
    fake.run(second, cb_second, LOGS)
    assert second.lrs_seen == whole.lrs_seen
    assert second.history["lr"][-1] == whole.history["lr"][-1]


def test_factory_is_told_apart_by_parameter_name(fake):
    with pytest.raises(TypeError, match="name its parameter `optimizer`"):
        fake.run(_trainer(fake), [LearningRateScheduler(lambda o: torch_lr.StepLR(o, 2))], LOGS)


def test_scheduler_on_another_optimizer_is_refused(fake):
    other = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1)
    cb = LearningRateScheduler(torch_lr.StepLR(other, 2))
    with pytest.raises(ValueError, match=r"another optimizer.*factory"):
        fake.run(_trainer(fake), [cb], LOGS)


def test_bad_schedules_state_the_rule(fake):
    with pytest.raises(ValueError, match="per='batch'"):
        LearningRateScheduler(lambda e: 0.1, per="batch")
    with pytest.raises(TypeError, match=r"kiln\.callbacks\.ReduceLROnPlateau"):
        opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1)
        LearningRateScheduler(torch_lr.ReduceLROnPlateau(opt))
    with pytest.raises(TypeError, match=r"schedule\(0\) must return a float lr, received '0.1'"):
        fake.run(_trainer(fake), [LearningRateScheduler(lambda epoch: "0.1")], LOGS)
