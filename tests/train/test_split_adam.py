"""Fused Adam on views: the same kernel in more pieces must give bitwise the optimizer's step."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from kiln.train import _split_adam
from kiln.train._split_adam import SplitFusedAdam, chunk_size, split_fused_adam


def _model() -> nn.Module:
    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Conv2d(3, 8, 3), nn.Flatten(), nn.Linear(8 * 6 * 6, 40), nn.Linear(40, 3)
    )
    return net.to(memory_format=torch.channels_last)  # a 4-D weight laid out NHWC


def _train(net: nn.Module, step, optimizer, steps: int = 5) -> None:
    g = torch.Generator().manual_seed(1)
    for _ in range(steps):
        x = torch.randn(4, 3, 8, 8, generator=g).to(next(net.parameters()).device)
        x = x.contiguous(memory_format=torch.channels_last)
        net(x).square().mean().backward()
        if net[3].bias.grad is not None:
            net[3].bias.grad = None  # a parameter without a gradient this step is skipped
        step()
        optimizer.zero_grad(set_to_none=True)


@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=pytest.mark.gpu)])
@pytest.mark.parametrize(
    "cls, options",
    [
        (torch.optim.Adam, {}),
        (torch.optim.Adam, {"weight_decay": 0.1, "amsgrad": True, "maximize": True}),
        (torch.optim.AdamW, {"weight_decay": 0.1}),
        (torch.optim.Adam, {"lr": torch.tensor(0.01)}),
    ],
)
def test_split_steps_equal_the_optimizers_own_bit_for_bit(cls, options, device):
    if device == "cuda" and not torch.cuda.is_available():
        pytest.skip("needs CUDA")
    nets = [_model().to(device), _model().to(device)]
    if isinstance(options.get("lr"), torch.Tensor):
        options = options | {"lr": options["lr"].to(device)}  # kiln keeps lr on the device
    opts = [cls(n.parameters(), fused=True, **({"lr": 0.01} | options)) for n in nets]
    _train(nets[0], opts[0].step, opts[0])
    split = SplitFusedAdam(opts[1], chunk=64)  # 40 x 288 weight: 180 views
    _train(nets[1], split, opts[1])
    for a, b in zip(nets[0].parameters(), nets[1].parameters(), strict=True):
        assert torch.equal(a, b)
    for p, q in zip(nets[0].parameters(), nets[1].parameters(), strict=True):
        for key, value in opts[0].state[p].items():
            assert torch.equal(value, opts[1].state[q][key]), key
    assert nets[1][0].weight.is_contiguous(memory_format=torch.channels_last)


def test_the_first_step_is_the_optimizers_own_and_creates_the_state(monkeypatch):
    net = _model()
    net[3].requires_grad_(False)  # never has a gradient, so never has state
    opt = torch.optim.Adam(net.parameters(), fused=True)
    split = SplitFusedAdam(opt, chunk=64)
    calls = []
    monkeypatch.setattr(opt, "step", lambda: calls.append(1) or type(opt).step(opt))
    for _ in range(2):
        net(torch.randn(2, 3, 8, 8)).sum().backward()
        split()
    assert calls == [1]  # the first step only: the stateless layer does not block the rest
    trained = [p for p in net.parameters() if p.requires_grad]
    assert all(int(opt.state[p]["step"]) == 2 for p in trained)


def test_chunks_fill_the_gpu_and_stay_within_torchs_own():
    # LeNet-5 (61,706 parameters) on an H100 (132 SMs): 4,096 (its 48,000-element weight: 12 views)
    assert chunk_size(61_706, 132) == 4_096
    assert chunk_size(2_000_000, 132) == 8_192
    assert chunk_size(25_557_032, 132) == 65_536  # ResNet-50: torch's chunks already fill it


def test_only_fused_adam_on_a_gpu_with_a_tensor_too_large_for_one_block_is_split(monkeypatch):
    net = nn.Linear(400, 120)
    adam = torch.optim.Adam(net.parameters(), fused=True)
    assert split_fused_adam(adam, torch.device("cpu")) is None
    assert split_fused_adam(torch.optim.SGD(net.parameters(), lr=0.1), torch.device("cuda")) is None
    assert split_fused_adam(torch.optim.Adam(net.parameters()), torch.device("cuda")) is None

    class Props:
        multi_processor_count = 132

    monkeypatch.setattr(_split_adam.torch.cuda, "get_device_properties", lambda device: Props())
    split = split_fused_adam(adam, torch.device("cuda"))
    assert isinstance(split, SplitFusedAdam) and split.chunk == 4_096
    small = torch.optim.Adam(nn.Linear(40, 12).parameters(), fused=True)
    assert (
        split_fused_adam(small, torch.device("cuda")) is None
    )  # 480 elements: one block is enough


def test_an_optimizer_with_step_hooks_keeps_its_own_step():
    net = _model()
    opt = torch.optim.Adam(net.parameters(), fused=True)
    seen = []
    opt.register_step_post_hook(lambda optimizer, args, kwargs: seen.append(1))
    split = SplitFusedAdam(opt, chunk=64)
    for _ in range(3):
        net(torch.randn(2, 3, 8, 8)).sum().backward()
        split()
    assert seen == [1, 1, 1]
