"""Training while the step compiles in a thread (``CompileBehind``): the switch, its errors, and
fit() on a CPU against eager training."""

import sys
import threading
import time

import pytest
import torch
from torch._dynamo.eval_frame import _debug_get_cache_entry_list

import kiln
from kiln import callbacks as C
from kiln import layers as L
from kiln.train import Trainer
from kiln.train._compile_behind import CompileBehind, CompileHere
from kiln.train._fast_path import use_background_compile


class _Steps:
    """An eager and a compiled step that record which one ran each batch."""

    def __init__(self) -> None:
        self.ran: list[tuple[str, int]] = []

    def eager(self, i: int) -> None:
        self.ran.append(("eager", i))

    def compiled(self, i: int) -> None:
        self.ran.append(("compiled", i))


def _wait_until_done(behind: CompileBehind) -> None:
    deadline = time.monotonic() + 10
    while behind.compiling and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not behind.compiling


def test_steps_run_eagerly_until_the_thread_is_done_then_switch():
    steps, release, started = _Steps(), threading.Event(), threading.Event()
    prepared: list[int] = []

    def prepare(i: int):
        prepared.append(i)
        if i == 0:
            return None  # e.g. a short batch: no compile with this one

        def work() -> None:
            started.set()
            assert release.wait(10)

        return work

    interval = sys.getswitchinterval()
    behind = CompileBehind(steps.eager, prepare, lambda: steps.compiled)
    for i in range(4):
        behind(i)
    assert started.wait(10) and behind.compiling
    assert sys.getswitchinterval() == pytest.approx(min(interval, CompileBehind.SWITCH_INTERVAL))
    release.set()
    _wait_until_done(behind)
    behind(4)
    behind(5)
    assert prepared == [0, 1]  # asked until it gave work, never after
    assert steps.ran == [("eager", 0), ("eager", 1), ("eager", 2), ("eager", 3),
                         ("compiled", 4), ("compiled", 5)]  # fmt: skip
    assert behind.switched and behind.eager_steps == 4
    assert sys.getswitchinterval() == interval
    assert behind.finish() == steps.compiled


def test_nothing_starts_before_the_eager_step_is_ready():
    steps = _Steps()
    ready = [False]
    behind = CompileBehind(steps.eager, lambda i: lambda: None, lambda: steps.compiled,
                           ready=lambda: ready[0])  # fmt: skip
    behind(0)
    assert not behind.compiling and behind._thread is None
    ready[0] = True
    behind(1)
    _wait_until_done(behind)
    behind(2)
    assert steps.ran == [("eager", 0), ("eager", 1), ("compiled", 2)]


def test_finish_waits_for_the_thread_and_raises_its_error():
    steps = _Steps()

    def prepare(i: int):
        def work() -> None:
            time.sleep(0.2)
            raise ValueError("Inductor could not compile this")

        return work

    behind = CompileBehind(steps.eager, prepare, lambda: steps.compiled)
    behind(0)
    with pytest.raises(ValueError, match="could not compile"):
        behind.finish()
    assert not behind.switched
    # without raising (fit() already stops on another error): the switch is made, and the
    # compiled step meets the error again when it is called
    behind(1)
    assert behind.finish(raise_error=False) == steps.compiled and behind.switched


def test_prepare_can_send_the_compile_to_the_foreground_with_a_warning():
    steps = _Steps()

    def prepare(i: int):
        raise CompileHere("background_compile: the model could not be copied (TypeError: lock)")

    behind = CompileBehind(steps.eager, prepare, lambda: steps.compiled)
    with pytest.warns(UserWarning, match=r"could not be copied \(TypeError: lock\); the step "
                      r"compiles now, before training goes on"):  # fmt: skip
        behind(0)
    behind(1)
    assert steps.ran == [("compiled", 0), ("compiled", 1)] and behind.switched


def test_finish_before_any_compile_switches_at_once():
    steps = _Steps()
    behind = CompileBehind(steps.eager, lambda i: None, lambda: steps.compiled)
    behind(0)
    assert behind.finish() == steps.compiled
    behind(1)
    assert steps.ran == [("eager", 0), ("compiled", 1)]


def test_auto_is_for_small_single_process_graph_captured_gpu_steps():
    cuda, cpu = torch.device("cuda"), torch.device("cpu")
    lenet = kiln.zoo.create_model("lenet5")
    lenet.build((1, 28, 28))
    big = torch.nn.Linear(4096, 2048)  # 8.4M parameters
    base = {"mode": None, "device": cuda, "model": lenet, "distributed": False, "captures": True,
            "precision": "bf16", "gather_in_graph": False}  # fmt: skip
    assert use_background_compile("auto", **base)
    assert not use_background_compile("auto", **{**base, "model": big})
    assert not use_background_compile("auto", **{**base, "device": cpu})
    assert not use_background_compile("auto", **{**base, "captures": False})
    assert not use_background_compile("auto", **{**base, "distributed": True})
    assert not use_background_compile("auto", **{**base, "mode": "max-autotune-no-cudagraphs"})
    assert not use_background_compile("auto", **{**base, "precision": "fp8"})
    assert use_background_compile(True, **{**base, "device": cpu, "captures": False})
    assert not use_background_compile(False, **base)
    saved = torch.are_deterministic_algorithms_enabled()
    try:
        torch.use_deterministic_algorithms(True)
        assert not use_background_compile("auto", **base)
    finally:
        torch.use_deterministic_algorithms(saved)


def test_option_refuses_other_values():
    with pytest.raises(ValueError, match="background_compile must be 'auto', True or False"):
        kiln.train.Trainer(torch.nn.Linear(2, 2), loss="mse", background_compile="yes")


class _Uncopyable(C.Callback):
    """Gives the trainer something that cannot be copied, as CUDA graphs are on a GPU: the
    model holds its trainer, and the copy that compiles must not copy it."""

    def on_train_begin(self, trainer):
        trainer._uncopyable = threading.Lock()


def _mlp_fit(x, y, **options):
    torch.manual_seed(0)
    model = kiln.Sequential([kiln.Input((8,)), L.Dense(16, activation="relu"), L.Dense(3)])
    model.compile(optimizer="adam", loss="cross_entropy", device="cpu", **options)
    histories = [model.fit(x, y, batch_size=16, epochs=2, shuffle=False, verbose=0, track=False,
                           callbacks=[_Uncopyable()]) for _ in range(2)]  # fmt: skip
    return model, histories


class _Raises(C.Callback):
    def on_batch_end(self, trainer, step, logs):
        if step == 2:
            raise RuntimeError("a callback failed at step 2")


def test_an_error_in_fit_is_raised_as_it_is_and_the_compile_still_ends():
    model = kiln.Sequential([kiln.Input((8,)), L.Dense(3)])
    model.compile(optimizer="adam", loss="cross_entropy", device="cpu", compile=True,
                  background_compile=True)  # fmt: skip
    x, y = torch.randn(64, 8), torch.randint(0, 3, (64,))
    with pytest.raises(RuntimeError, match="a callback failed at step 2"):
        model.fit(x, y, batch_size=16, verbose=0, track=False, callbacks=[_Raises()])
    trainer = model._trainer
    assert not isinstance(trainer._step_fn, CompileBehind)  # waited for, then switched
    assert trainer._forward_loss_fn is not trainer._forward_loss
    assert not any(t.name == "kiln-compile" for t in threading.enumerate())


class _Interrupts(C.Callback):
    def on_batch_end(self, trainer, step, logs):
        if step == 2:
            raise KeyboardInterrupt


def test_ctrl_c_does_not_wait_for_the_compile_and_the_next_fit_takes_its_step():
    model = kiln.Sequential([kiln.Input((8,)), L.Dense(3)])
    model.compile(optimizer="adam", loss="cross_entropy", device="cpu", compile=True,
                  background_compile=True)  # fmt: skip
    x, y = torch.randn(64, 8), torch.randint(0, 3, (64,))
    with pytest.raises(KeyboardInterrupt):
        model.fit(x, y, batch_size=16, verbose=0, track=False, callbacks=[_Interrupts()])
    trainer = model._trainer
    assert isinstance(trainer._step_fn, CompileBehind)  # fit() did not wait for it
    model.fit(x, y, batch_size=16, verbose=0, track=False)
    assert not isinstance(trainer._step_fn, CompileBehind)
    assert trainer._forward_loss_fn is not trainer._forward_loss
    assert not any(t.name == "kiln-compile" for t in threading.enumerate())


class _Locked(torch.nn.Module):
    """A layer that holds a lock: it cannot be copied."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = torch.nn.Linear(8, 3)
        self.lock = threading.Lock()

    def forward(self, x):
        return self.linear(x)


def test_a_model_that_cannot_be_copied_compiles_first_with_a_warning():
    model = _Locked()
    trainer = kiln.train.Trainer(model, loss="cross_entropy", device="cpu", compile=True,
                                 background_compile=True)  # fmt: skip
    x, y = torch.randn(64, 8), torch.randint(0, 3, (64,))
    with pytest.warns(UserWarning, match=r"the model could not be copied \(TypeError: "):
        history = trainer.fit(x, y, batch_size=16, epochs=2, verbose=0, track=False)
    assert trainer._forward_loss_fn is not trainer._forward_loss
    assert len(history.history["loss"]) == 2


def test_fit_trains_eagerly_while_compiling_then_compiled_with_the_copys_graph():
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(72, 8, generator=g), torch.randint(0, 3, (72,), generator=g)  # 4.5 batches
    eager, eager_histories = _mlp_fit(x, y, compile=False)
    torch._dynamo.reset()  # no compiled entries from earlier tests
    behind, histories = _mlp_fit(x, y, compile=True, background_compile=True)
    trainer = behind._trainer
    assert trainer.compiles_behind and not eager._trainer.compiles_behind
    # the first fit() ended waiting for the thread; the second trained with its step
    assert not isinstance(trainer._step_fn, CompileBehind)
    assert trainer._forward_loss_fn is not trainer._forward_loss
    # one graph: traced for the copy, and used for the model itself without a second trace
    assert len(_debug_get_cache_entry_list(Trainer._forward_loss.__code__)) == 1
    for a, b in zip(eager.state_dict().values(), behind.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
    for h_eager, h_behind in zip(eager_histories, histories, strict=True):
        assert h_behind.history["loss"] == pytest.approx(h_eager.history["loss"], rel=1e-4)


def test_a_verbose_fit_that_waits_for_the_compile_says_why(capsys):
    model = kiln.Sequential([kiln.Input((8,)), L.Dense(3)])
    model.compile(optimizer="adam", loss="cross_entropy", device="cpu", compile=True,
                  background_compile=True)  # fmt: skip
    x, y = torch.randn(32, 8), torch.randint(0, 3, (32,))
    model.fit(x, y, batch_size=16, verbose=2, track=False)  # two steps: done before the compile
    assert "compiling the step for the next fit() (background_compile)" in capsys.readouterr().err


def _holding(eager) -> CompileBehind:
    """A CompileBehind whose callables hold ``eager`` in their closures, as the trainer's do."""
    return CompileBehind(eager, lambda i: None, lambda: (lambda i: None),
                         ready=lambda: eager is not None)  # fmt: skip


def test_after_the_switch_nothing_holds_the_eager_step():
    import gc
    import weakref

    class Eager:
        def __call__(self, i):
            pass

    eager = Eager()
    gone = weakref.ref(eager)
    behind = _holding(eager)
    del eager
    behind(0)
    behind.finish()
    gc.collect()
    assert gone() is None  # its CUDA graphs and their memory go with it
