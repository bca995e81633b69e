from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.testing import assert_close

import kiln.layers as L
from kiln.layers import activations

REFERENCE = {
    "relu": torch.relu,
    "gelu": lambda x: 0.5 * x * (1 + torch.erf(x / 2**0.5)),
    "silu": lambda x: x * torch.sigmoid(x),
    "swish": lambda x: x * torch.sigmoid(x),
    "tanh": torch.tanh,
    "sigmoid": lambda x: 1 / (1 + torch.exp(-x)),
    "softmax": lambda x: torch.exp(x) / torch.exp(x).sum(-1, keepdim=True),
    "log_softmax": lambda x: x - torch.logsumexp(x, -1, keepdim=True),
    "leaky_relu": lambda x: torch.where(x > 0, x, 0.01 * x),
    "elu": lambda x: torch.where(x > 0, x, torch.exp(x) - 1),
    "selu": lambda x: (
        1.0507009873554805 * torch.where(x > 0, x, 1.6732632423543772 * (torch.exp(x) - 1))
    ),
    "softplus": lambda x: torch.log1p(torch.exp(x)),
    "hard_sigmoid": lambda x: torch.clamp(x + 3, 0, 6) / 6,
    "linear": lambda x: x,
}


def test_registry_is_covered_by_the_reference() -> None:
    assert sorted(REFERENCE) == activations.names()


@pytest.mark.parametrize("name", sorted(REFERENCE))
def test_activation_values(name: str, device: torch.device) -> None:
    x = torch.randn(4, 5, device=device) * 3
    assert_close(activations.get(name)(x), REFERENCE[name](x), atol=1e-5, rtol=1e-5)


def test_none_is_linear() -> None:
    x = torch.randn(3)
    assert activations.get(None)(x) is x


def test_softmax_axis_is_chosen_by_the_layer(device: torch.device) -> None:
    x = torch.randn(2, 3, 4, 5, device=device)
    assert_close(activations.get("softmax", axis=1)(x), torch.softmax(x, 1))
    assert_close(activations.get("softmax")(x), torch.softmax(x, -1))
    conv = L.Conv2D(3, 1, activation="softmax")
    assert_close(conv(x).sum(1), torch.ones(2, 4, 5, device=device))  # over channels
    dense = L.Dense(6, activation="softmax")
    assert_close(dense(x).sum(-1), torch.ones(2, 3, 4, device=device))  # over features


@pytest.mark.parametrize(
    ("fn", "name"),
    [
        (F.relu, "relu"),
        (torch.relu, "relu"),
        (nn.ReLU(), "relu"),
        (torch.tanh, "tanh"),
        (F.tanh, "tanh"),
        (torch.sigmoid, "sigmoid"),
        (F.silu, "silu"),
        (nn.SiLU(), "silu"),
        (F.gelu, "gelu"),
        (F.softmax, "softmax"),
        (nn.Identity(), "linear"),
        (nn.LeakyReLU(), "leaky_relu"),
    ],
)
def test_registered_callables_serialize_to_their_name(fn: object, name: str) -> None:
    assert activations.serialize(fn) == name  # type: ignore[arg-type]
    assert L.Dense(3, activation=fn).get_config()["activation"] == name  # type: ignore[arg-type]


def test_other_callables_serialize_to_import_paths() -> None:
    spec = activations.serialize(nn.LeakyReLU(0.2))
    assert spec == {
        "class": "torch.nn.modules.activation:LeakyReLU",
        "config": {"negative_slope": 0.2, "inplace": False},
    }
    rebuilt = activations.get(spec)
    assert isinstance(rebuilt, nn.LeakyReLU) and rebuilt.negative_slope == 0.2
    assert activations.serialize(torch.nn.functional.hardtanh) == "torch.nn.functional:hardtanh"


def test_unserializable_activation_fails_when_saved_not_when_built() -> None:
    layer = L.Dense(2, activation=lambda x: x * 2)
    assert_close(layer(torch.ones(1, 3)), 2 * F.linear(torch.ones(1, 3), layer.weight, layer.bias))
    with pytest.raises(ValueError, match="cannot save"):
        layer.get_config()


def test_unknown_name_lists_valid_names_and_echoes_value() -> None:
    with pytest.raises(ValueError, match=r"relu.*Received: activation='rleu'"):
        activations.get("rleu")
    with pytest.raises(ValueError, match="Received: activation='rleu'"):
        L.Dense(3, activation="rleu")
    with pytest.raises(ValueError, match="Received: activation=3"):
        L.Activation(3)  # type: ignore[arg-type]
