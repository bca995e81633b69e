"""SharedSetting: a process-wide setting held by overlapping threads comes back as it was."""

import sys
import threading

import pytest

from kiln._shared_setting import SharedSetting
from kiln.layers import _compiled_step
from kiln.train._compile_behind import SWITCH_INTERVAL_SETTING, CompileBehind


class _Box:
    value = "process"


def _setting() -> SharedSetting[str]:
    return SharedSetting(lambda: _Box.value, lambda v: setattr(_Box, "value", v))


def test_overlapping_holders_restore_the_process_value_when_the_last_leaves():
    _Box.value = "process"
    setting = _setting()
    setting.enter("trainer A")
    setting.enter("trainer B")  # B starts before A ends
    setting.leave()  # A ends: B still holds it
    assert _Box.value == "trainer B" and setting.holders == 1
    setting.leave()
    assert _Box.value == "process" and setting.holders == 0
    with setting.held("again"):
        assert _Box.value == "again"
    assert _Box.value == "process"


def test_a_leave_without_an_enter_is_an_error():
    with pytest.raises(RuntimeError, match="without a matching enter"):
        _setting().leave()


def test_threads_in_any_order_leave_the_process_value():
    _Box.value = "process"
    setting = _setting()
    barrier = threading.Barrier(8)

    def hold() -> None:
        with setting.held("training"):
            barrier.wait(10)  # all eight hold it at once
            assert _Box.value == "training"

    threads = [threading.Thread(target=hold) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert _Box.value == "process" and setting.holders == 0


def test_two_compiles_behind_two_trainings_give_the_switch_interval_back():
    interval = sys.getswitchinterval()
    releases = [threading.Event(), threading.Event()]

    def behind(release: threading.Event) -> CompileBehind:
        def work() -> None:
            assert release.wait(10)

        return CompileBehind(lambda: None, lambda: work, lambda: lambda: None)

    first, second = behind(releases[0]), behind(releases[1])
    first()
    second()  # both compiling
    assert sys.getswitchinterval() == pytest.approx(CompileBehind.SWITCH_INTERVAL)
    releases[0].set()
    first.finish()  # the first one ends while the second still compiles
    assert sys.getswitchinterval() == pytest.approx(CompileBehind.SWITCH_INTERVAL)
    releases[1].set()
    second.finish()
    assert sys.getswitchinterval() == interval and SWITCH_INTERVAL_SETTING.holders == 0


def test_the_trainer_flag_is_off_again_after_nested_and_overlapping_fits():
    import torch

    import kiln
    from kiln import callbacks as C
    from kiln import layers as L

    class EvaluateInside(C.Callback):  # evaluate() inside fit(): a nested scope
        def on_epoch_end(self, trainer, epoch, logs):
            self.seen = _compiled_step.TRAINER_ACTIVE
            trainer.evaluate(x, y, verbose=0)
            self.after = _compiled_step.TRAINER_ACTIVE

    x, y = torch.randn(32, 4), torch.randint(0, 2, (32,))
    model = kiln.Sequential([kiln.Input((4,)), L.Dense(2)])
    model.compile(optimizer="adam", loss="cross_entropy", device="cpu")
    inside = EvaluateInside()
    model.fit(x, y, batch_size=8, verbose=0, track=False, callbacks=[inside])
    assert inside.seen and inside.after  # still on after the nested evaluate()
    assert _compiled_step.TRAINER_ACTIVE is False


def test_trainers_in_threads_leave_cudnn_autotuning_and_the_flag_as_the_process_had_them():
    from types import SimpleNamespace

    import torch

    from kiln.train._fast_path import scoped_settings

    barrier, seen = threading.Barrier(2), []

    @scoped_settings
    def fit(trainer):  # a method of the trainer, as scoped_settings wraps them
        barrier.wait(10)  # both trainers are inside fit() at once
        seen.append((torch.backends.cudnn.benchmark, _compiled_step.TRAINER_ACTIVE))
        barrier.wait(10)

    saved = torch.backends.cudnn.benchmark
    try:
        torch.backends.cudnn.benchmark = False
        trainer = SimpleNamespace(device=torch.device("cuda"), cudnn_benchmark=True)
        threads = [threading.Thread(target=fit, args=(trainer,)) for _ in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert seen == [(True, True), (True, True)]
        assert torch.backends.cudnn.benchmark is False and _compiled_step.TRAINER_ACTIVE is False
    finally:
        torch.backends.cudnn.benchmark = saved
