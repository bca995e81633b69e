"""What layers do differently inside the Trainer's compiled step: only there, and the same
numbers as the plain computation."""

from __future__ import annotations

import threading

import pytest
import torch
import torch.nn.functional as F

import kiln
from kiln import layers as L
from kiln.layers import _compiled_step
from kiln.layers._compiled_step import in_trainer_step, padded_linear


@pytest.mark.parametrize("multiple", [1, 8])
@pytest.mark.parametrize("use_bias", [True, False])
def test_padded_linear_is_linear_in_values_and_gradients(multiple, use_bias):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(3, 5, 84, generator=g, dtype=torch.float64)  # rank 3, 84 = 10.5 x 8
    w = torch.randn(10, 84, generator=g, dtype=torch.float64)  # 10 units: padded to 16
    b = torch.randn(10, generator=g, dtype=torch.float64) if use_bias else None
    results = []
    for fn in (F.linear, lambda *a: padded_linear(*a, multiple)):
        leaves = [t.clone().requires_grad_() for t in (x, w, b) if t is not None]
        y = fn(leaves[0], leaves[1], leaves[2] if use_bias else None)
        y.backward(torch.linspace(-1, 1, y.numel(), dtype=y.dtype).view_as(y))
        results.append([y.detach()] + [t.grad for t in leaves])
    assert results[1][0].shape == (3, 5, 10)
    for ours, reference in zip(results[1], results[0], strict=True):
        torch.testing.assert_close(ours, reference)


def test_in_trainer_step_needs_the_trainer_a_trace_and_a_listed_device(monkeypatch):
    x = torch.zeros(2)
    traced = torch.compile(lambda t: t + in_trainer_step(t), backend="eager")
    monkeypatch.setattr(_compiled_step, "DEVICE_TYPES", ("cpu",))
    assert not in_trainer_step(x)  # the trainer is not running
    torch._dynamo.reset()
    assert traced(x).tolist() == [0.0, 0.0]  # traced, but outside the trainer
    monkeypatch.setattr(_compiled_step, "TRAINER_ACTIVE", True)
    assert not in_trainer_step(x)  # eager code
    torch._dynamo.reset()
    assert traced(x).tolist() == [1.0, 1.0]  # the trainer's trace
    monkeypatch.setattr(_compiled_step, "DEVICE_TYPES", ("cuda",))
    torch._dynamo.reset()
    assert traced(x).tolist() == [0.0, 0.0]  # a device not measured


def test_eager_code_beside_a_compile_in_another_thread_is_not_in_the_step(monkeypatch):
    """While the step compiles behind the training, the training thread runs eagerly: torch
    2.13 holds ``is_compiling()`` True process-wide for a compile's duration."""
    monkeypatch.setattr(_compiled_step, "DEVICE_TYPES", ("cpu",))
    monkeypatch.setattr(_compiled_step, "TRAINER_ACTIVE", True)
    compiling, release = threading.Event(), threading.Event()

    def backend(gm, example_inputs):  # runs inside the compile: hold it open
        compiling.set()
        assert release.wait(10)
        return gm

    torch._dynamo.reset()
    compiled = torch.compile(lambda t: t * 2, backend=backend)
    thread = threading.Thread(target=compiled, args=(torch.zeros(2),))
    thread.start()
    try:
        assert compiling.wait(10)
        assert not in_trainer_step(torch.zeros(2))
    finally:
        release.set()
        thread.join()


def test_dense_pads_its_product_only_in_the_trainers_step_when_asked(monkeypatch):
    calls = []
    original = _compiled_step.padded_linear

    def spy(x, w, b, multiple):
        calls.append((tuple(w.shape), multiple))
        return original(x, w, b, multiple)

    monkeypatch.setattr(kiln.layers._core, "padded_linear", spy)
    monkeypatch.setattr(_compiled_step, "DEVICE_TYPES", ("cpu",))
    torch.manual_seed(0)
    model = kiln.Sequential([kiln.Input((84,)), L.Dense(10, activation="relu")])
    x = torch.randn(4, 84)
    eager = model(x)
    monkeypatch.setattr(_compiled_step, "TRAINER_ACTIVE", True)
    torch._dynamo.reset()
    torch.compile(model, backend="eager")(x)
    assert calls == []  # the default, 1, pads nothing
    monkeypatch.setattr(L.Dense, "align_when_compiled", 8)
    torch._dynamo.reset()
    padded = torch.compile(model, backend="eager")(x)
    assert calls == [((10, 84), 8)]
    torch.testing.assert_close(padded, eager)
