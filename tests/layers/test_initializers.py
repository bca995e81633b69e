from __future__ import annotations

import math

import pytest
import torch
from torch import nn

import kiln.layers as L
from kiln.layers import initializers


def _filled(name: str, shape: tuple[int, ...]) -> torch.Tensor:
    t = torch.empty(shape)
    initializers.initialize(t, name, initializers.torch_uniform(1))
    return t


@pytest.mark.parametrize(
    ("name", "scale", "fan"),
    [
        ("glorot_uniform", 1.0, "avg"),
        ("he_uniform", 2.0, "in"),
        ("lecun_uniform", 1.0, "in"),
        ("glorot_normal", 1.0, "avg"),
        ("he_normal", 2.0, "in"),
        ("lecun_normal", 1.0, "in"),
    ],
)
@pytest.mark.parametrize("shape", [(256, 512), (64, 32, 3, 3)])
def test_variance_scaling_matches_keras(
    name: str, scale: float, fan: str, shape: tuple[int, ...]
) -> None:
    receptive = math.prod(shape[2:])
    fan_in, fan_out = shape[1] * receptive, shape[0] * receptive
    n = fan_in if fan == "in" else (fan_in + fan_out) / 2
    std = math.sqrt(scale / n)
    w = _filled(name, shape)
    assert abs(w.std().item() / std - 1) < 0.05
    if name.endswith("uniform"):
        assert w.abs().max() <= math.sqrt(3) * std
    else:  # truncated at two (pre-rescaling) standard deviations
        assert w.abs().max() <= 2 * std / 0.87962566103423978 + 1e-6


def test_kaiming_normal_fan_out_is_torchvisions_resnet_init() -> None:
    w = _filled("kaiming_normal_fan_out", (256, 64, 3, 3))
    std = math.sqrt(2 / (256 * 9))  # nn.init.kaiming_normal_(w, mode="fan_out"): untruncated
    assert abs(w.std().item() / std - 1) < 0.02
    assert w.abs().max() > 3.5 * std


def test_constant_orthogonal_and_keras_random_defaults() -> None:
    assert torch.equal(_filled("zeros", (3, 4)), torch.zeros(3, 4))
    assert torch.equal(_filled("ones", (5,)), torch.ones(5))
    q = _filled("orthogonal", (8, 8))
    torch.testing.assert_close(q @ q.T, torch.eye(8), atol=1e-5, rtol=0)
    assert _filled("uniform", (1000,)).abs().max() <= 0.05
    assert abs(_filled("normal", (100_000,)).std().item() - 0.05) < 0.002


def test_torch_initializer_is_the_torch_modules_default() -> None:
    dense = L.Dense(64, kernel_initializer="torch", bias_initializer="torch")
    dense(torch.zeros(1, 300))
    bound = 1 / math.sqrt(300)  # nn.Linear: kaiming_uniform(a=sqrt(5)) == U(+-1/sqrt(fan_in))
    assert dense.weight.abs().max() <= bound and dense.weight.abs().max() > 0.9 * bound
    assert dense.bias.abs().max() <= bound and dense.bias.abs().max() > 0.5 * bound
    emb = L.Embedding(1000, 50, embeddings_initializer="torch")  # nn.Embedding: N(0, 1)
    emb(torch.zeros(1, dtype=torch.long))
    assert abs(emb.weight.std().item() - 1) < 0.05


def test_defaults_are_keras(device: torch.device) -> None:
    dense = L.Dense(200)
    dense(torch.zeros(1, 300, device=device))
    limit = math.sqrt(6 / 500)
    assert dense.weight.abs().max() <= limit and dense.weight.std() > 0.9 * limit / math.sqrt(3)
    assert dense.bias.eq(0).all() and dense.weight.device.type == device.type


def test_custom_callable_runs_and_saves_as_import_path() -> None:
    dense = L.Dense(4, kernel_initializer=nn.init.ones_, bias_initializer=nn.init.kaiming_normal_)
    with pytest.raises(ValueError, match="Fan in and fan out"):
        dense(torch.zeros(1, 3))  # torch's kaiming needs 2-D: the user's function really runs
    dense = L.Dense(4, kernel_initializer=nn.init.kaiming_normal_)
    dense(torch.zeros(1, 3))
    assert dense.get_config()["kernel_initializer"] == "torch.nn.init:kaiming_normal_"
    assert L.Dense(4, kernel_initializer=nn.init.zeros_).get_config()["kernel_initializer"] == (
        "zeros"
    )


def test_unknown_initializer_lists_names_and_echoes_value() -> None:
    with pytest.raises(ValueError, match=r"glorot_uniform.*Received: initializer='glorot'"):
        L.Dense(3, kernel_initializer="glorot")
    with pytest.raises(ValueError, match="Received: initializer='he'"):
        L.Conv2D(3, 3, bias_initializer="he")
