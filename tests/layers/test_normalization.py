from __future__ import annotations

import re

import pytest
import torch
from torch import nn
from torch.testing import assert_close

import kiln.layers as L

from ._oracle import assert_matches_module, assert_same

CASES = [
    ((8, 5), nn.BatchNorm1d),
    ((4, 5, 7), nn.BatchNorm1d),
    ((4, 5, 3, 6), nn.BatchNorm2d),
    ((2, 5, 3, 4, 2), nn.BatchNorm3d),
]


@pytest.mark.parametrize(("shape", "torch_cls"), CASES)
def test_batchnorm_matches_torch_in_train_and_eval(
    shape: tuple[int, ...], torch_cls: type[nn.Module], device: torch.device
) -> None:
    layer, ref = L.BatchNorm(momentum=0.3), torch_cls(5, momentum=0.3).to(device)
    x = torch.randn(shape, device=device) * 2 + 1
    layer(x)
    with torch.no_grad():  # non-trivial affine parameters
        layer.weight.uniform_(0.5, 1.5), layer.bias.normal_()
    ref.load_state_dict(layer.state_dict())
    for _ in range(2):  # each call updates the running statistics
        assert_same(layer, ref, x, layer.parameters(), ref.parameters())
    for key, value in ref.state_dict().items():
        assert_close(layer.state_dict()[key], value, msg=key)
    assert layer.num_batches_tracked.item() == 3  # the building call, then one per assert_same
    layer.eval(), ref.eval()
    assert_same(layer, ref, x * 3, layer.parameters(), ref.parameters())


def test_batchnorm_channels_last_axis(device: torch.device) -> None:
    layer, ref = L.BatchNorm(axis=-1), nn.BatchNorm1d(6).to(device)
    x = torch.randn(4, 3, 6, device=device)
    layer(x)
    ref.load_state_dict(layer.state_dict())
    assert_same(
        layer,
        lambda t: ref(t.transpose(1, 2)).transpose(1, 2),
        x,
        layer.parameters(),
        ref.parameters(),
    )
    assert_close(layer.running_mean, ref.running_mean)


def test_batchnorm_errors() -> None:
    with pytest.raises(ValueError, match=re.escape("is 1 - m here). Received: momentum=1.99")):
        L.BatchNorm(momentum=1.99)
    with pytest.raises(ValueError, match=re.escape("Received: eps=0")):
        L.BatchNorm(eps=0)
    with pytest.raises(ValueError, match=re.escape("Received: axis=0")):
        L.BatchNorm(axis=0)
    with pytest.raises(ValueError, match=r"BatchNorm expects .*rank 2 to 5.*\(8,\)"):
        L.BatchNorm()(torch.zeros(8))
    with pytest.raises(ValueError, match=r"axis=3.*\(2, 4, 5\)"):
        L.BatchNorm(axis=3)(torch.zeros(2, 4, 5))


@pytest.mark.parametrize(
    ("shape", "axis", "normalized"),
    [((4, 7), -1, (7,)), ((2, 3, 7), 2, (7,)), ((2, 3, 4, 5), [-2, -1], (4, 5))],
)
def test_layernorm_matches_torch(
    shape: tuple[int, ...], axis: int | list[int], normalized: tuple[int, ...], device: torch.device
) -> None:
    layer = L.LayerNorm(axis=axis)
    x = torch.randn(shape, device=device)
    layer(x)
    with torch.no_grad():
        layer.weight.normal_(), layer.bias.normal_()
    assert_matches_module(layer, nn.LayerNorm(normalized), x)


def test_layernorm_over_channels_of_images(device: torch.device) -> None:
    layer = L.LayerNorm(axis=1)
    ref = nn.LayerNorm(3).to(device)
    x = torch.randn(2, 3, 4, 5, device=device)
    layer(x)
    with torch.no_grad():
        layer.weight.normal_(), layer.bias.normal_()
    ref.load_state_dict(layer.state_dict())
    assert_same(
        layer,
        lambda t: ref(t.permute(0, 2, 3, 1)).permute(0, 3, 1, 2),
        x,
        layer.parameters(),
        ref.parameters(),
    )


def test_layernorm_errors() -> None:
    with pytest.raises(ValueError, match=re.escape("Received: axis=[0, 1]")):
        L.LayerNorm(axis=[0, 1])
    with pytest.raises(ValueError, match=r"axis=\[3\].*\(2, 4, 5\)"):
        L.LayerNorm(axis=3)(torch.zeros(2, 4, 5))
    layer = L.LayerNorm()
    layer(torch.zeros(2, 4))
    with pytest.raises(ValueError, match=r"sizes \(4,\).*\(2, 5\)"):
        layer(torch.zeros(2, 5))


def test_normalization_standardizes_each_channel(device: torch.device) -> None:
    mean, var = torch.tensor([0.5, -1.0, 2.0]), torch.tensor([4.0, 0.25, 1.0])
    x = torch.randn(2, 3, 5, 4, device=device)
    expected = (x - mean.to(device).view(1, 3, 1, 1)) / var.to(device).view(1, 3, 1, 1).sqrt()
    assert_close(L.Normalization(mean.tolist(), var.tolist())(x), expected)
    assert_close(L.Normalization(mean, std=var.sqrt())(x), expected)
    rows = torch.randn(6, 4, device=device)  # a scalar broadcasts; axis=-1 for (batch, features)
    assert_close(L.Normalization(1.0, 4.0, axis=-1)(rows), (rows - 1) / 2)
    images = torch.randint(0, 256, (2, 3, 4, 4), dtype=torch.uint8, device=device)
    assert_close(L.Normalization(127.5, std=127.5)(images), images.float() / 127.5 - 1)


def test_normalization_adapt_gives_the_datas_mean_and_variance() -> None:
    x = torch.randn(300, 3, 6, 6) * torch.tensor([1.0, 3.0, 0.5]).view(1, 3, 1, 1) + 7
    layer = L.Normalization()
    layer.adapt(x, batch_size=64)  # in batches: the streaming sums agree with the whole
    per_channel = x.transpose(0, 1).reshape(3, -1)
    assert_close(layer.mean, per_channel.mean(1))
    assert_close(layer.variance, per_channel.var(1, correction=0))
    out = layer(x).transpose(0, 1).reshape(3, -1)
    assert_close(out.mean(1), torch.zeros(3), atol=1e-4, rtol=0)
    assert_close(out.std(1, correction=0), torch.ones(3))
    loader = torch.utils.data.DataLoader(x, batch_size=100)
    other = L.Normalization()
    other.adapt(loader)
    assert_close(other.mean, layer.mean)


def test_normalization_errors() -> None:
    with pytest.raises(ValueError, match=r"Received: mean=1.0, variance=None, std=None"):
        L.Normalization(1.0)
    with pytest.raises(ValueError, match="Received: mean=0, variance=1, std=1"):
        L.Normalization(0, 1, std=1)
    with pytest.raises(ValueError, match=r"2 mean values.*3 features on axis 1"):
        L.Normalization([0, 0], [1, 1])(torch.zeros(2, 3, 4, 4))
    with pytest.raises(ValueError, match="would overwrite"):
        L.Normalization(0, 1).adapt(torch.zeros(2, 3))
    with pytest.raises(ValueError, match="no samples"):
        L.Normalization().adapt([])
