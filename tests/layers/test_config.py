"""Every layer rebuilds from its JSON config, and with its state dict computes the same outputs."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.testing import assert_close

import kiln.layers as L


def img() -> torch.Tensor:
    return torch.randn(2, 4, 9, 8)


def seq() -> torch.Tensor:
    return torch.randn(2, 5, 4)


CASES: list[tuple[Callable[[], L.Layer], Callable[[], Any]]] = [
    (lambda: L.Dense(3, activation=F.relu, kernel_initializer=nn.init.xavier_normal_), seq),
    (lambda: L.Conv1D(3, 2, padding="causal", activation="tanh"), seq),
    (lambda: L.Conv2D(6, (3, 2), strides=2, padding="same", groups=2, use_bias=False), img),
    (lambda: L.Conv2DTranspose(3, 3, strides=2, padding="same", output_padding=1), img),
    (lambda: L.MaxPool2D(3, 2, padding="same"), img),
    (lambda: L.AvgPool2D((2, 3), padding="same"), img),
    (lambda: L.GlobalAvgPool2D(keepdims=True), img),
    (lambda: L.BatchNorm(momentum=0.01, axis=-1), seq),
    (lambda: L.LayerNorm(axis=[1, 2]), img),
    (lambda: L.Dropout(0.3), seq),
    (lambda: L.Flatten(), img),
    (lambda: L.Reshape((-1, 4)), img),
    (lambda: L.Activation(nn.LeakyReLU(0.1)), seq),
    (lambda: L.Embedding(7, 3), lambda: torch.randint(0, 7, (2, 5))),
    (lambda: L.LSTM(3, return_state=True, bidirectional=True, num_layers=2, dropout=0.1), seq),
    (lambda: L.GRU(3, return_sequences=True), seq),
    (lambda: L.Add(), lambda: [seq(), seq()]),
    (lambda: L.Concatenate(axis=-1), lambda: [seq(), seq()]),
    (lambda: L.Lambda(nn.Softmax(dim=1)), seq),
    (lambda: L.RandomTranslation(0.1), img),
    (lambda: L.RandomFlip("vertical"), img),
    (lambda: L.RandomCrop(6, 5, padding=(1, 2)), img),
    (lambda: L.Normalization([0.5, 1, 2, 3], std=torch.tensor(2.0)), img),
]


def test_every_public_layer_is_covered() -> None:
    covered = {type(make()).__name__ for make, _ in CASES}
    public = {
        n
        for n in L.__all__
        if isinstance(getattr(L, n), type) and issubclass(getattr(L, n), L.Layer) and n != "Layer"
    }
    assert public == covered
    assert all(L.Layer.registry[n] is getattr(L, n) for n in public)


@pytest.mark.parametrize(("make", "data"), CASES, ids=[type(m()).__name__ for m, _ in CASES])
def test_config_round_trip(
    make: Callable[[], L.Layer], data: Callable[[], Any], device: torch.device
) -> None:
    x = data()
    x = [t.to(device) for t in x] if isinstance(x, list) else x.to(device)
    layer = make()
    layer(x)
    config = json.loads(json.dumps(layer.get_config()))
    clone = type(layer).from_config(config)
    assert clone.get_config() == config
    clone(x)
    clone.load_state_dict(layer.state_dict())
    layer.eval(), clone.eval()
    out, out_clone = layer(x), clone(x)
    assert_close(out_clone, out)
