from __future__ import annotations

import pytest
import torch
from torch import nn

import kiln.layers as L

from ._oracle import assert_matches_module


def test_embedding_matches_torch(device: torch.device) -> None:
    x = torch.randint(0, 10, (3, 7), device=device)
    layer = L.Embedding(10, 4)
    assert_matches_module(layer, nn.Embedding(10, 4), x)
    assert layer(x).shape == (3, 7, 4)
    assert layer.weight.abs().max() <= 0.05  # Keras's "uniform" default


def test_embedding_errors() -> None:
    with pytest.raises(ValueError, match="Received: input_dim=0"):
        L.Embedding(0, 3)
    with pytest.raises(ValueError, match=r"integer indices.*float32.*dtype='int64'"):
        L.Embedding(5, 3)(torch.zeros(2, 3))
    with pytest.raises(ValueError, match="dtype='int64'"):
        L.Embedding(5, 3)(L.Input((4,)))
    with pytest.raises(IndexError, match=r"outside \[0, 5\)"):
        L.Embedding(5, 3)(torch.tensor([[1, 5]]))


def test_embedding_symbolic() -> None:
    assert L.Embedding(5, 3)(L.Input((None,), dtype="int64")).shape == (None, None, 3)
