from __future__ import annotations

import re

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.testing import assert_close

import kiln.layers as L

from ._oracle import assert_matches_module, assert_same


@pytest.mark.parametrize("shape", [(4, 7), (2, 3, 7), (2, 2, 3, 7)])
@pytest.mark.parametrize("use_bias", [True, False])
def test_dense_matches_linear(shape: tuple[int, ...], use_bias: bool, device: torch.device) -> None:
    layer = L.Dense(5, use_bias=use_bias)
    assert_matches_module(layer, nn.Linear(7, 5, bias=use_bias), torch.randn(shape, device=device))


def test_dense_activation(device: torch.device) -> None:
    layer = L.Dense(5, activation="gelu")
    x = torch.randn(3, 4, device=device)
    layer(x)
    assert_same(
        layer, lambda x: F.gelu(F.linear(x, layer.weight, layer.bias)), x, list(layer.parameters())
    )


def test_dense_errors_echo_values() -> None:
    with pytest.raises(ValueError, match="Received: units=-3"):
        L.Dense(-3)
    with pytest.raises(
        ValueError,
        match=r"Dense expects inputs of shape \(batch, \.\.\., features\)"
        r".*\(5,\)",
    ):
        L.Dense(3)(torch.zeros(5))
    layer = L.Dense(3)
    layer(torch.zeros(2, 4))
    with pytest.raises(ValueError, match=r"built for inputs with 4 features.*\(2, 6\)"):
        layer(torch.zeros(2, 6))


def test_activation_layer(device: torch.device) -> None:
    x = torch.randn(2, 3, 4, device=device)
    assert_same(L.Activation("elu"), F.elu, x)
    assert_same(L.Activation("softmax", axis=1), lambda t: torch.softmax(t, 1), x)
    assert_same(L.Activation(nn.Tanh()), torch.tanh, x)


def test_dropout(device: torch.device) -> None:
    layer = L.Dropout(0.25)
    x = torch.ones(200, 200, device=device)
    y = layer(x)
    kept = y != 0
    assert abs(kept.float().mean().item() - 0.75) < 0.02
    assert_close(y[kept], torch.full_like(y[kept], 1 / 0.75))
    layer.eval()
    assert torch.equal(layer(x), x)
    for bad in (1.0, -0.1, "0.5"):
        with pytest.raises(ValueError, match=re.escape(f"Received: rate={bad!r}")):
            L.Dropout(bad)  # type: ignore[arg-type]


def test_flatten(device: torch.device) -> None:
    x = torch.randn(2, 3, 4, 5, device=device)
    assert_same(L.Flatten(), lambda t: t.reshape(2, 60), x)
    assert L.Flatten()(torch.zeros(3, device=device)).shape == (3, 1)
    assert L.Flatten()(torch.zeros(0, 3, 4)).shape == (0, 12)


def test_reshape(device: torch.device) -> None:
    x = torch.randn(2, 12, device=device)
    assert_same(L.Reshape((3, 4)), lambda t: t.reshape(2, 3, 4), x)
    assert L.Reshape((-1, 2))(x).shape == (2, 6, 2)
    assert L.Reshape([2, -1, 3])(x).shape == (2, 2, 2, 3)


def test_reshape_errors_echo_both_shapes() -> None:
    with pytest.raises(ValueError, match=r"samples of shape \(784,\).*target_shape \(28, 27\)"):
        L.Reshape((28, 27))(torch.zeros(2, 784))
    with pytest.raises(ValueError, match=r"\(5,\).*target_shape \(-1, 2\)"):
        L.Reshape((-1, 2))(torch.zeros(2, 5))
    for bad in ((-1, -1), (0, 3), 5, (2.0, 3)):
        with pytest.raises(ValueError, match=re.escape(f"Received: target_shape={bad!r}")):
            L.Reshape(bad)  # type: ignore[arg-type]
