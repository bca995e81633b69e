import numpy as np
import pytest
import torch
from torch import nn

import kiln
from kiln import layers as L


def test_sgd_fit_equals_a_hand_written_torch_loop():
    torch.manual_seed(0)
    x, y = torch.randn(64, 5), torch.randint(0, 3, (64,))
    model = kiln.Sequential([kiln.Input((5,)), L.Dense(8, activation="tanh"), L.Dense(3)])
    ref = nn.Sequential(nn.Linear(5, 8), nn.Tanh(), nn.Linear(8, 3))
    ref.load_state_dict(dict(zip(ref.state_dict(), model.state_dict().values(), strict=True)))
    model.compile(optimizer="sgd", lr=0.1, loss="cross_entropy", device="cpu")
    model.fit(x, y, epochs=3, batch_size=16, shuffle=False, verbose=0)
    opt = torch.optim.SGD(ref.parameters(), lr=0.1)
    for _ in range(3):
        for i in range(0, 64, 16):
            loss = nn.functional.cross_entropy(ref(x[i : i + 16]), y[i : i + 16])
            opt.zero_grad()
            loss.backward()
            opt.step()
    for (k, a), b in zip(model.state_dict().items(), ref.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b, msg=k)


def test_linear_regression_reaches_least_squares_solution():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(512, 3))  # float64 NumPy: converted to float32
    y = (x @ np.array([[2.0], [-1.0], [0.5]]) + 0.3).astype(np.float32)
    model = kiln.Sequential([L.Dense(1)])
    model.compile(optimizer="adam", lr=0.05, loss="mse", device="cpu")
    history = model.fit(x, y, epochs=60, batch_size=64, verbose=0)
    torch.testing.assert_close(
        model[0].weight.detach(), torch.tensor([[2.0, -1.0, 0.5]]), atol=2e-2, rtol=0
    )
    assert history.history["loss"][-1] < 1e-3 < history.history["loss"][0]


def test_reported_metrics_equal_direct_computation():
    x, y = torch.randn(300, 4), torch.randint(0, 2, (300,))
    model = kiln.Sequential([L.Dense(2)])
    model.compile(loss="cross_entropy", metrics=["accuracy"], device="cpu")
    model.fit(x[:10], y[:10], epochs=1, verbose=0)  # builds
    logs = model.evaluate(x, y, batch_size=64, verbose=0)
    with torch.no_grad():
        out = model(x)
    assert logs["accuracy"] == pytest.approx((out.argmax(1) == y).float().mean().item(), abs=1e-6)
    assert logs["loss"] == pytest.approx(nn.functional.cross_entropy(out, y).item(), rel=1e-5)


def test_class_weight_equals_matching_sample_weight():
    x, y = torch.randn(40, 3), torch.randint(0, 2, (40,))
    weights = {0: 1.0, 1: 4.0}
    results = []
    for kwargs in ({"class_weight": weights}, {"sample_weight": torch.where(y == 1, 4.0, 1.0)}):
        torch.manual_seed(1)
        model = kiln.Sequential([kiln.Input((3,)), L.Dense(2)])
        model.compile(optimizer="sgd", loss="cross_entropy", device="cpu")
        model.fit(x, y, epochs=2, batch_size=8, shuffle=False, verbose=0, **kwargs)
        results.append(model[0].weight.detach().clone())
    torch.testing.assert_close(results[0], results[1])


def test_validation_split_uses_the_tail_and_history_has_val_keys():
    x, y = torch.randn(100, 3), torch.randn(100, 1)
    model = kiln.Sequential([kiln.Input((3,)), L.Dense(1)])
    model.compile(optimizer="sgd", lr=0.0, loss="mse", device="cpu")  # lr 0: weights fixed
    history = model.fit(x, y, epochs=1, batch_size=10, validation_split=0.2, verbose=0)
    tail = model.evaluate(x[80:], y[80:], verbose=0)["loss"]
    assert history.history["val_loss"][0] == pytest.approx(tail, rel=1e-6)
    assert set(history.history) == {"loss", "val_loss"}


def test_multi_output_history_and_predict_structure():
    x = kiln.Input((4,))
    h = L.Dense(8, activation="relu")(x)
    model = kiln.Model(x, {"cls": L.Dense(3)(h), "reg": L.Dense(1)(h)})
    model.compile(
        loss={"cls": "cross_entropy", "reg": "mse"}, metrics={"cls": ["accuracy"]}, device="cpu"
    )
    xs = torch.randn(32, 4)
    ys = {"cls": torch.randint(0, 3, (32,)), "reg": torch.randn(32, 1)}
    history = model.fit(xs, ys, epochs=2, batch_size=8, verbose=0)
    assert set(history.history) == {"loss", "cls_loss", "cls_accuracy", "reg_loss"}
    out = model.predict(xs, batch_size=5)
    assert out["cls"].shape == (32, 3) and out["reg"].device.type == "cpu"
    torch.testing.assert_close(out["reg"], model(xs)["reg"].detach())


def test_fit_accepts_a_torch_dataset():
    data = torch.utils.data.TensorDataset(torch.randn(50, 3), torch.randint(0, 2, (50,)))
    model = kiln.Sequential([L.Dense(2)])
    model.compile(loss="cross_entropy", metrics=["accuracy"], device="cpu")
    history = model.fit(data, epochs=2, batch_size=16, verbose=0)
    assert len(history.history["loss"]) == 2


def test_any_torch_module_trains_through_the_trainer():
    from kiln.train import Trainer

    net = nn.Sequential(nn.Linear(2, 16), nn.ReLU(), nn.Linear(16, 2))
    x = torch.randn(256, 2)
    y = (x[:, 0] * x[:, 1] > 0).long()  # XOR-like quadrants
    trainer = Trainer(net, "adam", "cross_entropy", ["accuracy"], lr=0.02, device="cpu")
    trainer.fit(x, y, epochs=40, batch_size=32, verbose=0)
    assert trainer.evaluate(x, y, verbose=0)["accuracy"] > 0.9


def test_bf16_autocast_on_cpu_trains():
    x, y = torch.randn(128, 4), torch.randint(0, 2, (128,))
    model = kiln.Sequential([L.Dense(16, activation="relu"), L.Dense(2)])
    model.compile(loss="cross_entropy", precision="bf16", device="cpu")
    history = model.fit(x, y, epochs=3, batch_size=32, verbose=0)
    assert np.isfinite(history.history["loss"]).all()
