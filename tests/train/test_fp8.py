"""precision="fp8": torchao's float8 linears. Refused where float8 cannot run; on the CPU the
tests run torchao's emulation (float8 rounding in fp32) through the same code."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import kiln
import kiln._fp8
from kiln import layers as L
from kiln.train import _fp8

Float8Linear = pytest.importorskip("torchao.float8.float8_linear").Float8Linear


def _mlp(last: int = 10) -> kiln.Sequential:
    torch.manual_seed(0)
    return kiln.Sequential(
        [kiln.Input((32,)), L.Dense(64, activation="relu"), L.Dense(48, activation="relu")],
        [L.Dense(last)],
    )


def _data(n: int = 512) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    x = torch.randn(n, 32, generator=g)
    return x, (x[:, :10].argmax(1))  # a rule the net can learn: the largest of ten inputs


def test_fp8_is_refused_where_float8_cannot_run():
    model = _mlp()
    model.compile(optimizer="adam", loss="cross_entropy", device="cpu", precision="fp8")
    with pytest.raises(ValueError, match=r"precision='fp8' cannot train here: fp8 needs an NVIDIA"):
        model.fit(*_data(), verbose=0)


@pytest.fixture
def emulated(monkeypatch):
    monkeypatch.setattr(_fp8, "fp8_unsupported", lambda device: None)


def test_fp8_linears_round_their_products_and_keep_their_parameters(emulated):
    model = _mlp()
    model.build((32,))
    keys = list(model.state_dict())
    first = model[0]
    weight = first.weight
    x = torch.randn(64, 32)
    exact = F.linear(x, first.weight, first.bias)
    # Dense(10) has 10 outputs, not a multiple of 16: it stays as it was
    assert _fp8.convert_linears(model, torch.device("cpu")) == ["0", "1"]
    assert list(model.state_dict()) == keys and first.weight is weight
    rounded = first._linear(x)  # the product alone, before the activation
    error = (rounded - exact).norm() / exact.norm()
    assert 1e-4 < error < 0.1  # float8 rounding: e4m3 keeps 3 mantissa bits
    plain = nn.Sequential(nn.Linear(32, 64), nn.ReLU(), nn.Linear(64, 5))
    assert _fp8.convert_linears(plain, torch.device("cpu")) == ["0"]
    assert isinstance(plain[0], Float8Linear) and type(plain[2]) is nn.Linear


def test_fp8_training_learns_what_fp32_learns(emulated):
    x, y = _data()
    accuracy = {}
    for precision in ("fp32", "fp8"):
        model = _mlp()
        model.compile(optimizer="adam", loss="cross_entropy", metrics=["accuracy"],
                      device="cpu", precision=precision, lr=3e-3)  # fmt: skip
        before = model[0].weight.detach().clone()
        history = model.fit(x, y, epochs=30, batch_size=64, verbose=0)
        assert not torch.equal(model[0].weight, before)  # the optimizer moved the shared weight
        accuracy[precision] = history.history["accuracy"][-1]
        # evaluate runs in inference mode under autocast (where torchao's own layer fails)
        assert model.evaluate(x, y, verbose=0)["accuracy"] > 0.9
    assert accuracy["fp32"] > 0.9 and abs(accuracy["fp8"] - accuracy["fp32"]) < 0.05, accuracy


def test_a_torch_model_compiled_twice_for_fp8_trains_both_times(emulated):
    x, y = _data()
    model = nn.Sequential(nn.Linear(32, 64), nn.ReLU(), nn.Linear(64, 10))
    for _ in range(2):  # the second compile() finds its linears converted already
        kiln.train.Trainer(model, loss="cross_entropy", device="cpu", precision="fp8").fit(
            x, y, epochs=1, verbose=0
        )
    assert isinstance(model[0], Float8Linear) and type(model[2]) is nn.Linear


def test_a_model_without_eligible_linears_is_refused_with_the_reason(emulated):
    model = kiln.Sequential([kiln.Input((12,)), L.Dense(10)])
    model.compile(optimizer="adam", loss="cross_entropy", device="cpu", precision="fp8")
    with pytest.raises(ValueError, match="multiples of 16 in float8, and this model has none"):
        model.fit(torch.randn(8, 12), torch.randint(0, 10, (8,)), verbose=0)


@pytest.mark.gpu
def test_fp8_matches_bf16_accuracy_on_the_digits():
    if not torch.cuda.is_available() or torch.cuda.get_device_capability() < (8, 9):
        pytest.skip("fp8 needs a GPU of compute capability >= 8.9")
    (x, y), (xt, yt) = kiln.datasets.mnist()
    accuracy = {}
    for precision in ("bf16", "fp8"):
        runs = []
        for seed in range(2):
            torch.manual_seed(seed)
            model = kiln.Sequential(
                [kiln.Input((1, 28, 28)), L.Flatten(), L.Dense(512, activation="relu")],
                [L.Dense(256, activation="relu"), L.Dense(10)],
            )
            model.compile(optimizer="adam", loss="cross_entropy", metrics=["accuracy"],
                          precision=precision, seed=seed)  # fmt: skip
            model.fit(x, y, epochs=10, batch_size=128, verbose=0)
            runs.append(model.evaluate(xt, yt, verbose=0)["accuracy"])
        accuracy[precision] = sum(runs) / len(runs)
    assert abs(accuracy["fp8"] - accuracy["bf16"]) <= 0.005, accuracy


def test_a_model_trained_in_fp8_deploys_and_keeps_training_in_fp8(emulated):
    pytest.importorskip("onnx")
    from kiln import deploy

    x, y = _data()
    model = _mlp()
    model.compile(optimizer="adam", loss="cross_entropy", device="cpu", precision="fp8")
    model.fit(x, y, epochs=1, batch_size=64, verbose=0)
    plain = nn.Sequential(nn.Linear(32, 64), nn.ReLU(), nn.Linear(64, 16))
    _fp8.convert_linears(plain, torch.device("cpu"))
    for trained in (model.eval(), plain.eval()):
        products = [m._linear for m in trained.modules() if hasattr(m, "_linear")]
        kinds = [type(m) for m in trained.modules()]
        engine = deploy.optimize(trained, x[:4], precision="fp32", batch_sizes=(1, 4),
                                 device="cpu")  # fmt: skip
        with torch.no_grad():  # what the engine computes: the trained weights, exact products
            reference = kiln._fp8.strip_float8(copy.deepcopy(trained))(x[:4])
        torch.testing.assert_close(engine(x[:4]), reference, rtol=1e-4, atol=1e-5)
        # the model itself still runs its float8 products afterwards
        assert [m._linear for m in trained.modules() if hasattr(m, "_linear")] == products
        assert [type(m) for m in trained.modules()] == kinds
