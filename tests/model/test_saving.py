import json

import pytest
import torch
from safetensors import safe_open
from torch import nn

import kiln
from kiln import layers as L


def _round_trip(model, x, tmp_path):
    path = tmp_path / "m.kiln"
    model.eval()
    expected = model(*x) if isinstance(x, tuple) else model(x)
    model.save(path)
    loaded = kiln.load_model(path).eval()
    got = loaded(*x) if isinstance(x, tuple) else loaded(x)
    return expected, got, loaded


def test_sequential_round_trip_gives_identical_predictions(tmp_path):
    model = kiln.Sequential(
        [
            kiln.Input((1, 16, 16)),
            L.Conv2D(4, 3, padding="same", activation="relu"),
            L.BatchNorm(),
            L.MaxPool2D(2),
            L.Dropout(0.5),
            L.Flatten(),
            L.Dense(10),
        ]
    )
    model(torch.randn(8, 1, 16, 16))  # move BN running stats away from their init
    x = torch.randn(5, 1, 16, 16)
    expected, got, loaded = _round_trip(model, x, tmp_path)
    assert torch.equal(expected, got)
    assert type(loaded) is kiln.Sequential


def test_functional_multi_io_round_trip(tmp_path):
    a, b = kiln.Input((5,), name="a"), kiln.Input((7,), name="b")
    h = L.Concatenate()([L.Dense(4, activation="tanh")(a), L.Dense(4)(b)])
    model = kiln.Model([a, b], [L.Dense(3)(h), L.Dense(1)(h)])
    x = (torch.randn(4, 5), torch.randn(4, 7))
    expected, got, _ = _round_trip(model, x, tmp_path)
    for e, g in zip(expected, got, strict=True):
        assert torch.equal(e, g)


def test_recurrent_and_embedding_round_trip(tmp_path):
    tokens = kiln.Input((None,), dtype="int64")
    h = L.LSTM(8, return_sequences=True)(L.Embedding(20, 6)(tokens))
    model = kiln.Model(tokens, L.Dense(2)(L.GRU(5)(h)))
    x = torch.randint(0, 20, (3, 9))
    expected, got, _ = _round_trip(model, x, tmp_path)
    assert torch.equal(expected, got)


def test_torch_modules_inside_sequential_round_trip(tmp_path):
    model = kiln.Sequential([kiln.Input((6,)), nn.Linear(6, 4, bias=False), nn.GELU(), L.Dense(2)])
    expected, got, loaded = _round_trip(model, torch.randn(3, 6), tmp_path)
    assert torch.equal(expected, got)
    assert loaded[0].bias is None


def test_file_is_safetensors_with_json_architecture(tmp_path):
    model = kiln.Sequential([kiln.Input((3,)), L.Dense(2)])
    model.compile(optimizer="sgd", loss="mse")
    model.save(tmp_path / "m.kiln")
    with safe_open(str(tmp_path / "m.kiln"), framework="pt") as f:
        header = json.loads(f.metadata()["kiln"])
        assert sorted(f.keys()) == ["0.bias", "0.weight"]
    assert header["model"]["class_name"] == "Sequential"
    assert header["compile"]["optimizer"] == "sgd"
    assert kiln.load_model(tmp_path / "m.kiln")._compile_args["loss"] == "mse"


def test_unserializable_module_fails_at_save_time(tmp_path):
    class Custom(nn.Module):
        def __init__(self, k):
            super().__init__()
            self.lin = nn.Linear(k, 2)

        def forward(self, x):
            return self.lin(x)

    model = kiln.Sequential([kiln.Input((3,)), Custom(3)])
    with pytest.raises(TypeError, match="get_config"):
        model.save(tmp_path / "m.kiln")
    assert not (tmp_path / "m.kiln").exists()


def test_missing_and_corrupt_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        kiln.load_model(tmp_path / "nope.kiln")
    bad = tmp_path / "bad.kiln"
    bad.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json")
    with pytest.raises(ValueError, match="not a kiln model file"):
        kiln.load_model(bad)


def test_weights_only_round_trip_for_subclassed_models(tmp_path):
    class Net(kiln.Model):
        def __init__(self):
            super().__init__()
            self.a = nn.Linear(3, 2)

        def forward(self, x):
            return self.a(x)

    net, other = Net(), Net()
    with pytest.raises(TypeError, match="save_weights"):
        net.save(tmp_path / "n.kiln")
    net.save_weights(tmp_path / "w.safetensors")
    other.load_weights(tmp_path / "w.safetensors")
    x = torch.randn(2, 3)
    assert torch.equal(net(x), other(x))
