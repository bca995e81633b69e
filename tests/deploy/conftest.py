"""Tiny models for the deploy tests: a conv net with BatchNorm (non-trivial statistics), an MLP."""

from __future__ import annotations

import time
from typing import Any

import pytest
import torch
from torch import nn

import kiln
from kiln import layers as L


def randomize_batchnorm(model: nn.Module) -> nn.Module:
    """Running statistics and affine parameters away from their identity initial values."""
    generator = torch.Generator().manual_seed(1)
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            shape = module.running_mean.shape
            module.running_mean.copy_(torch.randn(shape, generator=generator))
            module.running_var.copy_(torch.rand(shape, generator=generator) + 0.5)
            with torch.no_grad():
                module.weight.copy_(torch.randn(shape, generator=generator))
                module.bias.copy_(torch.randn(shape, generator=generator))
    return model.eval()


def make_conv_net() -> nn.Module:
    model = kiln.Sequential([
        kiln.Input((3, 8, 8)),
        L.Conv2D(4, 3, padding="same", use_bias=False), L.BatchNorm(), L.Activation("relu"),
        L.Conv2D(6, 3, strides=2), L.BatchNorm(), L.Activation("relu"),
        L.Flatten(), L.Dense(5),
    ])  # fmt: skip
    return randomize_batchnorm(model)


@pytest.fixture
def conv_net() -> nn.Module:
    return make_conv_net()


class MLP(nn.Module):
    """A plain torch module (no kiln save format): stored as an exported program."""

    def __init__(self) -> None:
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(6, 16), nn.Linear(16, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(torch.relu(self.fc1(x)))


@pytest.fixture
def mlp() -> nn.Module:
    return MLP().eval()


@pytest.fixture
def images() -> torch.Tensor:
    return torch.randn(3, 3, 8, 8)


def rel_error(output: torch.Tensor, reference: torch.Tensor) -> float:
    """Max abs error over max abs reference: the error kiln.deploy reports, computed here."""
    output, reference = output.detach().float(), reference.detach().float()
    return float((output - reference).abs().max() / reference.abs().max())


def fake_packages(monkeypatch: pytest.MonkeyPatch, build_s: float = 0.0) -> dict[str, Any]:
    """Stand-in packages (a C++ build takes ~20 s on a CPU; test_repository.py builds a real
    one): build_package writes a file after ``build_s`` s, the probe passes, load_package runs
    the module it was given. Returns the built modules by path."""
    built: dict[str, Any] = {}

    def build_package(module, example, path, options):
        time.sleep(build_s)
        path.write_bytes(b"stand-in")
        built[str(path)] = module
        return path

    def load_package(path, device):
        module = built[str(path)]
        return lambda x: module(x)

    monkeypatch.setattr("kiln.deploy._builds.build_package", build_package)
    monkeypatch.setattr("kiln.deploy._optimize.probe_packages", lambda *args, **kw: None)
    monkeypatch.setattr("kiln.deploy._optimize.load_package", load_package)
    return built
