"""Small convolutions as a matrix product (under torch.compile on GPUs): the same values and
gradients as F.conv2d, and used only where it was meant to be."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import kiln
from kiln import layers as L
from kiln.layers import _compiled_step, _conv_matmul
from kiln.layers._conv_matmul import conv2d_as_matmul, use_matmul


@pytest.mark.parametrize("rows", ["slices", "unfold"])
@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("filters", [16, 6])  # 6: padded to 8 filters for the product
def test_the_product_is_the_convolution_and_so_are_its_gradients(
    stride, channels_last, rows, filters, monkeypatch
):
    monkeypatch.setattr(_conv_matmul, "ROWS", rows)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(3, 6, 11, 9, generator=g, dtype=torch.float64)  # depth 90: padded to 96
    w = torch.randn(filters, 6, 5, 3, generator=g, dtype=torch.float64)
    b = torch.randn(filters, generator=g, dtype=torch.float64)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
        w = w.contiguous(memory_format=torch.channels_last)
    grads = []
    for fn in (F.conv2d, conv2d_as_matmul):
        leaves = [t.clone().requires_grad_() for t in (x, w, b)]
        y = fn(*leaves, (stride, stride))
        y.backward(torch.linspace(-1, 1, y.numel(), dtype=y.dtype).view_as(y))
        grads.append([y.detach()] + [t.grad for t in leaves])
    for ours, reference in zip(grads[1], grads[0], strict=True):
        torch.testing.assert_close(ours, reference)
    assert grads[1][0].stride(1) == 1  # channels innermost, as channels_last lays them out


def test_only_small_ungrouped_undilated_convolutions_qualify():
    x, w = torch.empty(128, 6, 14, 14), torch.empty(16, 6, 5, 5)  # LeNet-5's second
    assert use_matmul(x, w, (1, 1), (1, 1), 1)
    assert not use_matmul(x, w, (1, 1), (2, 2), 1)
    assert not use_matmul(x, torch.empty(16, 3, 5, 5), (1, 1), (1, 1), 2)
    big = torch.empty(256, 3, 224, 224)  # ResNet-50's stem: 472M unfolded values
    assert not use_matmul(big, torch.empty(64, 3, 7, 7), (2, 2), (1, 1), 1)
    deep = torch.empty(8, 64, 14, 14)  # a row of 64 * 3 * 3 = 576 values
    assert not use_matmul(deep, torch.empty(64, 64, 3, 3), (1, 1), (1, 1), 1)
    assert use_matmul(x, torch.empty(16, 6, 1, 1), (1, 1), (1, 1), 1)
    assert not use_matmul(x, torch.empty(17, 6, 1, 1), (1, 1), (1, 1), 1)  # wider than measured
    stem = torch.empty(1, 3, 230, 230)  # ResNet-50's stem at batch 1: small, but 64 filters
    assert not use_matmul(stem, torch.empty(64, 3, 7, 7), (2, 2), (1, 1), 1)
    deterministic = torch.are_deterministic_algorithms_enabled()
    try:
        torch.use_deterministic_algorithms(True)  # unfold's backward adds with atomics
        assert not use_matmul(x, w, (1, 1), (1, 1), 1)
    finally:
        torch.use_deterministic_algorithms(deterministic)


def test_small_convolutions_take_the_product_by_default_with_rows_from_unfold():
    assert kiln.layers._conv._Conv.matmul_when_compiled is True
    assert _conv_matmul.ROWS == "unfold" and _compiled_step.DEVICE_TYPES == ("cuda",)


def _lenet() -> kiln.Sequential:
    torch.manual_seed(0)
    return kiln.Sequential([
        kiln.Input((1, 12, 12)),
        L.Conv2D(6, 5, padding="same", activation="relu"), L.MaxPool2D(2),
        L.Conv2D(8, 3, activation="relu"), L.Flatten(), L.Dense(10),
    ])  # fmt: skip


@pytest.fixture
def on_the_cpu(monkeypatch):
    """The path on (as by default), and for the CPU."""
    monkeypatch.setattr(_compiled_step, "DEVICE_TYPES", ("cpu",))
    monkeypatch.setattr(kiln.layers._conv._Conv, "matmul_when_compiled", True)


@pytest.fixture
def spy(monkeypatch):
    """The input shapes of each convolution run as a product."""
    calls = []
    original = _conv_matmul.conv2d_as_matmul

    def spying(*args):
        calls.append(tuple(args[0].shape))
        return original(*args)

    monkeypatch.setattr(kiln.layers._conv, "conv2d_as_matmul", spying)
    return calls


def test_the_trainers_compiled_layers_use_the_product_and_match_eager(monkeypatch, on_the_cpu, spy):
    model = _lenet()
    x = torch.randn(4, 1, 12, 12)
    eager = model(x)
    assert spy == []  # eager code keeps F.conv2d
    torch._dynamo.reset()
    monkeypatch.setattr(_compiled_step, "TRAINER_ACTIVE", True)  # as inside Trainer.fit
    compiled = torch.compile(model)(x)
    assert spy == [(4, 1, 16, 16), (4, 6, 6, 6)]  # the first padded "same" by 2
    torch.testing.assert_close(compiled, eager, rtol=1e-4, atol=1e-5)


def test_the_users_own_compile_keeps_the_convolutions_and_fit_scopes_the_product(on_the_cpu, spy):
    model = _lenet()
    x = torch.randn(8, 1, 12, 12)
    torch._dynamo.reset()
    torch.compile(model)(x)  # outside a Trainer: a graph a user might export or serve
    assert spy == [] and _compiled_step.TRAINER_ACTIVE is False
    model.compile(optimizer="adam", loss="cross_entropy", device="cpu", compile=True)
    model.fit(x, torch.randint(0, 10, (8,)), batch_size=4, verbose=0, track=False)
    assert set(spy) == {(4, 1, 16, 16), (4, 6, 6, 6)}  # fit()'s compiled step took it
    assert _compiled_step.TRAINER_ACTIVE is False  # and put the setting back


def test_deployment_export_keeps_the_convolutions(on_the_cpu):
    from kiln.deploy._capture import capture

    program = capture(_lenet().eval(), torch.randn(2, 1, 12, 12))  # a dynamic batch
    targets = [str(node.target) for node in program.graph.nodes]
    assert targets.count("aten.conv2d.default") == 2, targets


@pytest.mark.gpu
def test_fit_on_a_gpu_takes_the_product_and_learns_as_cudnn_does(monkeypatch):
    """kiln's defaults on CUDA (compiled, bf16, CUDA graphs): LeNet-5's convolutions go through
    the product, and a few epochs land where cuDNN's convolutions do."""
    calls = []
    original = _conv_matmul.conv2d_as_matmul
    monkeypatch.setattr(
        kiln.layers._conv, "conv2d_as_matmul", lambda *a: calls.append(a[0].shape) or original(*a)
    )
    g = torch.Generator().manual_seed(1)
    templates = torch.randn(10, 1, 28, 28, generator=g)  # a class each, seen through noise
    y = torch.randint(0, 10, (1024,), generator=g)
    x = templates[y] + torch.randn(1024, 1, 28, 28, generator=g)
    results = {}
    for product in (True, False):
        monkeypatch.setattr(kiln.layers._conv._Conv, "matmul_when_compiled", product)
        torch._dynamo.reset()
        torch.manual_seed(0)
        model = kiln.zoo.create_model("lenet5", augment=False)
        model.compile(optimizer="adam", loss="cross_entropy", metrics=["accuracy"], device="cuda")
        results[product] = model.fit(x, y, batch_size=64, epochs=3, verbose=0, track=False).history
    assert calls, "the compiled step never took the product"
    assert {tuple(shape) for shape in calls} == {(64, 1, 32, 32), (64, 6, 14, 14)}  # padded
    # on CPU (eager fp32) two seeds reached 0.993 and 0.997 and epoch-1 losses 1.96 and 2.11
    assert min(results[True]["accuracy"][-1], results[False]["accuracy"][-1]) > 0.95
    assert abs(results[True]["loss"][0] - results[False]["loss"][0]) < 0.05
