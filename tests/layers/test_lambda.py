from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.testing import assert_close

import kiln.layers as L


def _round_trip(layer: L.Layer) -> L.Layer:
    config = json.loads(json.dumps(layer.get_config()))
    return type(layer).from_config(config)


def test_wraps_modules_and_functions(device: torch.device) -> None:
    x = torch.randn(2, 3, 4, device=device)
    assert_close(L.Lambda(nn.ReLU())(x), torch.relu(x))
    assert_close(L.Lambda(torch.flatten, arguments={"start_dim": 1})(x), x.reshape(2, 12))
    assert L.Lambda(nn.ReLU())(L.Input((3, None))).shape == (None, 3, None)


def test_function_config_is_an_import_path(device: torch.device) -> None:
    layer = L.Lambda(F.softmax, arguments={"dim": 1})
    assert layer.get_config()["fn"] == "torch.nn.functional:softmax"
    x = torch.randn(2, 5, device=device)
    assert_close(_round_trip(layer)(x), torch.softmax(x, 1))
    assert L.Lambda(torch.tanh).get_config()["fn"] == "torch:tanh"


def test_module_config_rebuilds_module_and_weights(device: torch.device) -> None:
    layer = L.Lambda(nn.LeakyReLU(0.3))
    x = torch.randn(4, 3, device=device)
    assert_close(_round_trip(layer)(x), F.leaky_relu(x, 0.3))
    linear = L.Lambda(nn.Linear(3, 2, bias=False))
    assert list(linear.state_dict()) == ["fn.weight"]
    rebuilt = _round_trip(linear)
    rebuilt.load_state_dict(linear.state_dict())
    linear.to(device), rebuilt.to(device)
    assert_close(rebuilt(x), linear(x))


def test_unsaveable_callables_fail_at_save_time() -> None:
    layer = L.Lambda(lambda t: t * 2)
    assert torch.equal(layer(torch.ones(2)), torch.full((2,), 2.0))
    with pytest.raises(ValueError, match=r"Lambda cannot save .*<lambda>"):
        layer.get_config()

    class Local(nn.Module):
        def forward(self, t: torch.Tensor) -> torch.Tensor:
            return t

    with pytest.raises(ValueError, match="Lambda cannot save"):
        L.Lambda(Local()).get_config()
    with pytest.raises(ValueError, match="Received: arguments="):
        L.Lambda(torch.add, arguments={"other": torch.ones(1)}).get_config()
    with pytest.raises(ValueError, match="Received: fn=3"):
        L.Lambda(3)  # type: ignore[arg-type]
