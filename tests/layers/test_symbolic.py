"""Layers called on kiln.layers.Input report the output shape, batch and free axes as None."""

from __future__ import annotations

import pytest

import kiln.layers as L

CASES = [
    (L.Conv2D(6, 5), (1, 28, 28), (None, 6, 24, 24)),
    (L.Conv2D(6, 3, strides=2, padding="same"), (3, None, 9), (None, 6, None, 5)),
    (L.Conv2DTranspose(4, 3, strides=2, padding="same"), (2, 7, None), (None, 4, 14, None)),
    (L.Conv1D(4, 3), (2, None), (None, 4, None)),
    (L.MaxPool2D(), (3, 28, 27), (None, 3, 14, 13)),
    (L.AvgPool2D(3, 2, padding="same"), (3, 9, 8), (None, 3, 5, 4)),
    (L.GlobalAvgPool2D(), (3, None, None), (None, 3)),
    (L.Dense(10), (None, 8), (None, None, 10)),
    (L.Flatten(), (1, 28, 28), (None, 784)),
    (L.Reshape((1, 28, 28)), (784,), (None, 1, 28, 28)),
    (L.BatchNorm(), (3, None, None), (None, 3, None, None)),
    (L.LayerNorm(), (None, 8), (None, None, 8)),
    (L.LSTM(4, return_sequences=True, bidirectional=True), (None, 8), (None, None, 8)),
]


@pytest.mark.parametrize(
    ("layer", "shape", "expected"), CASES, ids=[type(c[0]).__name__ for c in CASES]
)
def test_symbolic_shape(layer: L.Layer, shape: tuple, expected: tuple) -> None:
    assert layer(L.Input(shape)).shape == expected


def test_symbolic_call_builds_in_eval_and_keeps_mode() -> None:
    bn = L.BatchNorm()
    bn(L.Input((3, 4, 4)))
    assert bn.training and bn.num_batches_tracked.item() == 0
