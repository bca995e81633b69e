from __future__ import annotations

import itertools
import math
import re

import pytest
import torch
from torch import Tensor, nn
from torch.testing import assert_close

import kiln.layers as L

from ._oracle import assert_same


def tf_same_pool(x: Tensor, k: tuple[int, int], s: tuple[int, int], reduce: str) -> Tensor:
    """TensorFlow's SAME pooling by brute force: windows clipped to the input, no padding."""
    h, w = x.shape[2:]
    out_h, out_w = math.ceil(h / s[0]), math.ceil(w / s[1])
    top = max((out_h - 1) * s[0] + k[0] - h, 0) // 2
    left = max((out_w - 1) * s[1] + k[1] - w, 0) // 2
    rows = []
    for i, j in itertools.product(range(out_h), range(out_w)):
        r0, c0 = i * s[0] - top, j * s[1] - left
        window = x[:, :, max(r0, 0) : r0 + k[0], max(c0, 0) : c0 + k[1]].flatten(2)
        rows.append(window.amax(-1) if reduce == "max" else window.mean(-1))
    return torch.stack(rows, -1).reshape(*x.shape[:2], out_h, out_w)


@pytest.mark.parametrize("size", [(6, 7), (7, 6), (5, 5)])
@pytest.mark.parametrize(("pool", "stride"), [(2, None), (3, 2), (3, 1), ((2, 3), (1, 2))])
@pytest.mark.parametrize("cls", [L.MaxPool2D, L.AvgPool2D])
def test_same_pooling_matches_tensorflow(
    size: tuple[int, int],
    pool: int | tuple,
    stride: int | tuple | None,
    cls: type,
    device: torch.device,
) -> None:
    layer = cls(pool, stride, padding="same")
    k = (pool, pool) if isinstance(pool, int) else pool
    s = k if stride is None else ((stride, stride) if isinstance(stride, int) else stride)
    x = torch.randn(2, 3, *size, device=device)
    reduce = "max" if cls is L.MaxPool2D else "mean"
    assert layer(x).shape[2:] == tuple(math.ceil(n / st) for n, st in zip(size, s))
    assert_same(layer, lambda x: tf_same_pool(x, k, s, reduce), x)


@pytest.mark.parametrize(("pool", "stride"), [(2, None), (3, 2), ((2, 3), 1)])
def test_valid_pooling_matches_torch(
    pool: int | tuple, stride: int | None, device: torch.device
) -> None:
    x = torch.randn(2, 3, 9, 8, device=device)
    assert_same(L.MaxPool2D(pool, stride), nn.MaxPool2d(pool, stride), x)
    assert_same(L.AvgPool2D(pool, stride), nn.AvgPool2d(pool, stride), x)


@pytest.mark.parametrize(
    ("pool", "stride", "pad"), [(3, 2, 1), (3, 1, (1, 0)), ((2, 4), 2, (1, 2))]
)
def test_explicit_padding_matches_torch(
    pool: int | tuple, stride: int, pad: int | tuple, device: torch.device
) -> None:
    x = torch.randn(2, 3, 9, 8, device=device)
    assert_same(L.MaxPool2D(pool, stride, padding=pad), nn.MaxPool2d(pool, stride, pad), x)
    avg = nn.AvgPool2d(pool, stride, pad, count_include_pad=False)
    assert_same(L.AvgPool2D(pool, stride, padding=pad), avg, x)


def test_global_avg_pool(device: torch.device) -> None:
    x = torch.randn(2, 3, 5, 4, device=device)
    assert_same(L.GlobalAvgPool2D(), lambda t: t.mean((2, 3)), x)
    assert_close(L.GlobalAvgPool2D(keepdims=True)(x), nn.AdaptiveAvgPool2d(1)(x))


def test_pooling_errors() -> None:
    with pytest.raises(ValueError, match=re.escape("Received: padding='full'")):
        L.MaxPool2D(padding="full")
    with pytest.raises(ValueError, match=re.escape("Received: padding=2, pool_size=3")):
        L.MaxPool2D(3, padding=2)
    with pytest.raises(ValueError, match=re.escape("Received: pool_size=0")):
        L.AvgPool2D(0)
    with pytest.raises(
        ValueError,
        match=r"MaxPool2D expects inputs of shape \(batch, channels, "
        r"height, width\).*\(2, 8, 8\).*x\[:, None\]",
    ):
        L.MaxPool2D()(torch.zeros(2, 8, 8))
    with pytest.raises(ValueError, match=r"GlobalAvgPool2D.*\(2, 8\)"):
        L.GlobalAvgPool2D()(torch.zeros(2, 8))
