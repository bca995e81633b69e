from __future__ import annotations

import math
import re

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

import kiln.layers as L
from kiln.layers._padding import same_pads

from ._oracle import assert_matches_module, assert_same


def tf_same_pads(size: int, k: int, s: int, d: int = 1) -> tuple[int, int]:
    """TensorFlow's documented SAME rule, written out independently of kiln."""
    k_eff = d * (k - 1) + 1
    total = max(k_eff - s, 0) if size % s == 0 else max(k_eff - size % s, 0)
    return total // 2, total - total // 2


# (size, kernel, stride, dilation) -> TensorFlow's (before, after)
KNOWN = {
    (5, 3, 2, 1): (1, 1),
    (6, 3, 2, 1): (0, 1),
    (7, 4, 1, 1): (1, 2),
    (8, 2, 2, 1): (0, 0),
    (7, 3, 3, 1): (1, 1),
    (4, 3, 1, 2): (2, 2),
    (10, 5, 4, 1): (1, 2),
    (3, 1, 2, 1): (0, 0),
}


@pytest.mark.parametrize(("args", "pads"), KNOWN.items())
def test_same_padding_matches_tensorflow(args: tuple[int, ...], pads: tuple[int, int]) -> None:
    assert same_pads(*args) == pads == tf_same_pads(*args)


@pytest.mark.parametrize("size", [(7, 8), (8, 7), (9, 9)])
@pytest.mark.parametrize("stride", [1, 2, 3])
@pytest.mark.parametrize("kernel", [(3, 3), (4, 2)])
def test_conv2d_same(
    size: tuple[int, int], stride: int, kernel: tuple[int, int], device: torch.device
) -> None:
    layer = L.Conv2D(4, kernel, strides=stride, padding="same")
    x = torch.randn(2, 3, *size, device=device)
    layer(x)
    (t, b), (le, r) = (tf_same_pads(n, k, stride) for n, k in zip(size, kernel))

    def ref(x: Tensor) -> Tensor:
        return F.conv2d(F.pad(x, (le, r, t, b)), layer.weight, layer.bias, stride)

    assert layer(x).shape[2:] == tuple(math.ceil(n / stride) for n in size)
    assert_same(layer, ref, x, [layer.weight, layer.bias])


def test_conv2d_same_with_dilation(device: torch.device) -> None:
    layer = L.Conv2D(2, 3, dilation_rate=2, padding="same")
    x = torch.randn(1, 2, 6, 7, device=device)
    layer(x)
    assert_same(
        layer,
        lambda x: F.conv2d(x, layer.weight, layer.bias, padding="same", dilation=2),
        x,
        [layer.weight, layer.bias],
    )


@pytest.mark.parametrize(
    "kwargs",
    [
        {},
        {"stride": 2},
        {"padding": 2},
        {"padding": (1, 0), "stride": (2, 1)},
        {"dilation": 2, "groups": 3},
        {"bias": False},
    ],
)
def test_conv2d_matches_torch(kwargs: dict, device: torch.device) -> None:
    ref = nn.Conv2d(6, 9, 3, **kwargs)
    names = {"stride": "strides", "dilation": "dilation_rate", "bias": "use_bias"}
    layer = L.Conv2D(9, 3, **{names.get(k, k): v for k, v in kwargs.items()})
    assert_matches_module(layer, ref, torch.randn(2, 6, 9, 8, device=device))


def test_conv1d_matches_torch(device: torch.device) -> None:
    x = torch.randn(2, 4, 11, device=device)
    assert_matches_module(L.Conv1D(5, 3, strides=2), nn.Conv1d(4, 5, 3, stride=2), x)
    assert_matches_module(
        L.Conv1D(5, 3, padding="same", dilation_rate=2),
        nn.Conv1d(4, 5, 3, padding="same", dilation=2),
        x,
    )


def test_causal_conv1d(device: torch.device) -> None:
    layer = L.Conv1D(3, 4, padding="causal", dilation_rate=2)
    x = torch.randn(2, 2, 10, device=device, requires_grad=True)
    y = layer(x)
    assert y.shape == (2, 3, 10)
    ref = F.conv1d(F.pad(x, (6, 0)), layer.weight, layer.bias, dilation=2)
    torch.testing.assert_close(y, ref)
    (grad,) = torch.autograd.grad(y[..., 4].sum(), x)
    assert grad[..., 5:].eq(0).all() and grad[..., 4].ne(0).all()  # no look-ahead


def tf_conv_transpose(layer: L.Conv2DTranspose, x: Tensor, out_hw: tuple[int, int]) -> Tensor:
    """TensorFlow's definition: the gradient of a conv2d (with TF padding) from out_hw to x."""
    z = torch.zeros(x.shape[0], layer.filters, *out_hw, device=x.device, requires_grad=True)
    k = [(k - 1) * d + 1 for k, d in zip(layer.kernel_size, layer.dilation_rate)]
    if layer.padding == "same":
        (t, b), (le, r) = (tf_same_pads(n, kk, s) for n, kk, s in zip(out_hw, k, layer.strides))
    else:
        t = b = le = r = 0
    y = F.conv2d(
        F.pad(z, (le, r, t, b)), layer.weight, None, layer.strides, dilation=layer.dilation_rate
    )
    assert y.shape[2:] == x.shape[2:]
    (grad,) = torch.autograd.grad(y, z, x, create_graph=True)
    return grad + layer.bias[:, None, None]


def keras_transpose_size(
    n: int, k: int, s: int, padding: str, out_pad: int | None, d: int = 1
) -> int:
    k = (k - 1) * d + 1
    if out_pad is None:
        return n * s + max(k - s, 0) if padding == "valid" else n * s
    pad = k // 2 if padding == "same" else 0
    return (n - 1) * s + k - 2 * pad + out_pad


@pytest.mark.parametrize("padding", ["same", "valid"])
@pytest.mark.parametrize(
    ("kernel", "stride", "out_pad", "dilation"),
    [
        (3, 2, None, 1),
        (4, 2, None, 1),
        (2, 3, None, 1),
        (5, 1, None, 1),
        (3, 2, 1, 1),
        (4, 3, 2, 1),
        (3, 2, None, 2),
        (3, 1, None, 2),
    ],
)
def test_conv2d_transpose_matches_tensorflow(
    padding: str,
    kernel: int,
    stride: int,
    out_pad: int | None,
    dilation: int,
    device: torch.device,
) -> None:
    layer = L.Conv2DTranspose(
        3, kernel, strides=stride, padding=padding, output_padding=out_pad, dilation_rate=dilation
    )
    x = torch.randn(2, 4, 5, 6, device=device)
    y = layer(x)
    out_hw = tuple(
        keras_transpose_size(n, kernel, stride, padding, out_pad, dilation) for n in (5, 6)
    )
    assert y.shape == (2, 3, *out_hw)
    if padding == "same" and out_pad is None:
        assert out_hw == (5 * stride, 6 * stride)
    assert_same(layer, lambda x: tf_conv_transpose(layer, x, out_hw), x, [layer.weight, layer.bias])


def test_conv2d_transpose_valid_matches_torch(device: torch.device) -> None:
    x = torch.randn(2, 4, 5, 6, device=device)
    assert_matches_module(
        L.Conv2DTranspose(3, 3, strides=2), nn.ConvTranspose2d(4, 3, 3, stride=2), x
    )
    assert_matches_module(
        L.Conv2DTranspose(6, 3, groups=2, use_bias=False),
        nn.ConvTranspose2d(4, 6, 3, groups=2, bias=False),
        x,
    )


def test_conv_input_errors_echo_shapes() -> None:
    msg = (
        r"Conv2D expects inputs of shape (batch, channels, height, width), received an input "
        r"of shape (2, 28, 28) (rank 3). Add a channel axis (x[:, None]) or use Reshape."
    )
    with pytest.raises(ValueError, match=re.escape(msg)):
        L.Conv2D(6, 5)(torch.zeros(2, 28, 28))
    with pytest.raises(
        ValueError,
        match=r"Conv1D expects inputs of shape \(batch, channels, "
        r"length\).*\(2, 28\)",
    ):
        L.Conv1D(6, 5)(torch.zeros(2, 28))
    layer = L.Conv2D(6, 5)
    layer(torch.zeros(1, 3, 8, 8))
    with pytest.raises(ValueError, match=r"built for inputs with 3 channels.*\(1, 1, 8, 8\)"):
        layer(torch.zeros(1, 1, 8, 8))
    with pytest.raises(ValueError, match=r"divisible by groups=2.*\(1, 3, 8, 8\)"):
        L.Conv2D(4, 3, groups=2)(torch.zeros(1, 3, 8, 8))


@pytest.mark.parametrize(
    ("kwargs", "echo"),
    [
        ({"padding": "foo"}, "padding='foo'"),
        ({"padding": "causal"}, "padding='causal'"),
        ({"padding": (1, -1)}, "padding=(1, -1)"),
        ({"filters": -1}, "filters=-1"),
        ({"kernel_size": (3, 3, 3)}, "kernel_size=(3, 3, 3)"),
        ({"strides": 0}, "strides=0"),
        ({"filters": 5, "groups": 2}, "filters=5, groups=2"),
    ],
)
def test_conv_argument_errors_echo_values(kwargs: dict, echo: str) -> None:
    args = {"filters": 4, "kernel_size": 3} | kwargs
    with pytest.raises(ValueError, match=re.escape(f"Received: {echo}")):
        L.Conv2D(**args)


def test_conv_transpose_argument_errors() -> None:
    with pytest.raises(ValueError, match=re.escape("Received: padding=1")):
        L.Conv2DTranspose(3, 3, padding=1)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=re.escape("Received: output_padding=2, strides=2")):
        L.Conv2DTranspose(3, 3, strides=2, output_padding=2)
