from __future__ import annotations

import re

import pytest
import torch

import kiln.layers as L

from ._oracle import assert_same


def test_add(device: torch.device) -> None:
    a, b = torch.randn(2, 3, 4, device=device), torch.randn(2, 3, 4, device=device)
    assert_same(lambda t: L.Add()([t, b, t]), lambda t: t + b + t, a)
    assert torch.equal(L.Add()(a, b), a + b)
    assert torch.equal(L.Add()([a, torch.ones(3, 1, device=device)]), a + 1)  # broadcasting
    assert L.Add()([L.Input((3, 4)), L.Input((3, 4))]).shape == (None, 3, 4)


def test_concatenate(device: torch.device) -> None:
    a, b = torch.randn(2, 3, 4, device=device), torch.randn(2, 5, 4, device=device)
    assert_same(lambda t: L.Concatenate()([t, b]), lambda t: torch.cat([t, b], 1), a)
    assert L.Concatenate(axis=-1)([a, a]).shape == (2, 3, 8)
    assert L.Concatenate()([L.Input((3, None)), L.Input((5, None))]).shape == (None, 8, None)


def test_merge_errors_echo_shapes() -> None:
    with pytest.raises(ValueError, match=re.escape("Received: shapes [(2, 3), (2, 4)]")):
        L.Add()([torch.zeros(2, 3), torch.zeros(2, 4)])
    with pytest.raises(
        ValueError,
        match=re.escape("axis=1 (not the batch axis). Received: shapes [(2, 3, 4), (2, 3, 5)]"),
    ):
        L.Concatenate()([torch.zeros(2, 3, 4), torch.zeros(2, 3, 5)])
    with pytest.raises(ValueError, match=re.escape("Received: shapes [(2, 3), (2, 3, 1)]")):
        L.Concatenate(axis=-1)([torch.zeros(2, 3), torch.zeros(2, 3, 1)])
    with pytest.raises(ValueError, match=re.escape("Received: ['list']")):
        L.Add()([[torch.zeros(1)]])
