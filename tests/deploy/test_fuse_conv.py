"""The conv + bias (+ add) + ReLU rewrite, on the CPU: the graph it makes and the math it keeps.

cuDNN's fused operators have CUDA kernels only. Here they get CPU kernels written from their
definition, ``relu(conv(x, w, b) + alpha * z)``, for the duration of a test; the GPU test
(``test_gpu.py``) runs cuDNN's own.
"""

from __future__ import annotations

import collections

import pytest
import torch
import torch.nn.functional as F
from torch import fx, nn

from kiln.deploy._aoti import inductor_options, load_package
from kiln.deploy._builds import build_packages
from kiln.deploy._capture import capture
from kiln.deploy._fold import FoldBatchNorm
from kiln.deploy._fuse_conv import FuseConvReLU

from .conftest import randomize_batchnorm

aten = torch.ops.aten


@pytest.fixture
def fused_ops_on_cpu():
    library = torch.library.Library("aten", "IMPL")

    def relu(x, w, b, stride, padding, dilation, groups):
        return torch.relu(F.conv2d(x, w, b, stride, padding, dilation, groups))

    def add_relu(x, w, z, alpha, b, stride, padding, dilation, groups):
        conv = F.conv2d(x, w, b, stride, padding, dilation, groups)
        return torch.relu(conv + (1 if alpha is None else alpha) * z)

    library.impl("cudnn_convolution_relu", relu, "CPU")
    library.impl("cudnn_convolution_add_relu", add_relu, "CPU")
    yield
    library._destroy()


def conv_bn(cin: int, cout: int, k: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, k, stride, k // 2, bias=False), nn.BatchNorm2d(cout))


class Block(nn.Module):
    """A ResNet basic block; with ``stride`` 2 its shortcut is a convolution + BatchNorm."""

    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.a, self.b = conv_bn(cin, cout, 3, stride), conv_bn(cout, cout, 3)
        self.shortcut = conv_bn(cin, cout, 1, stride) if stride != 1 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.b(torch.relu(self.a(x))) + self.shortcut(x))


class TinyResNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stem = conv_bn(3, 8, 3)
        self.blocks = nn.Sequential(Block(8, 16, 2), Block(16, 16, 1))
        self.head = nn.Linear(16, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.blocks(torch.relu(self.stem(x)))
        return self.head(x.mean((2, 3)))


def _ops(module: nn.Module) -> collections.Counter[str]:
    graph = next(m for m in module.modules() if isinstance(m, fx.GraphModule)).graph
    return collections.Counter(str(n.target) for n in graph.nodes if n.op == "call_function")


def _folded(model: nn.Module, x: torch.Tensor) -> nn.Module:
    return FoldBatchNorm().apply(capture(randomize_batchnorm(model), x).module())


def test_every_conv_relu_of_a_resnet_becomes_one_call_with_the_same_outputs(fused_ops_on_cpu):
    model, x = TinyResNet(), torch.randn(2, 3, 16, 16)
    fuse = FuseConvReLU()
    out = fuse.apply(_folded(model, x))
    # stem; block 1: a, b + shortcut conv; block 2: a, b + identity
    assert fuse.describe() == {"fused": 5, "with_add": 2}
    ops = _ops(out)
    assert ops["aten.cudnn_convolution_relu.default"] == 3
    assert ops["aten.cudnn_convolution_add_relu.default"] == 2
    assert ops["aten.relu.default"] == ops["aten.add.Tensor"] == 0
    # the one convolution left is block 1's shortcut: its bias moved into the fused call's
    (shortcut,) = [n for n in out.graph.nodes if n.target is aten.conv2d.default]
    assert shortcut.args[2] is None
    with torch.no_grad():
        torch.testing.assert_close(out(x), model(x), rtol=1e-5, atol=1e-5)


class InPlaceBlock(nn.Module):
    """torchvision's style: ``nn.ReLU(inplace=True)`` and ``out += identity``."""

    def __init__(self) -> None:
        super().__init__()
        self.a, self.b = conv_bn(8, 8, 3), conv_bn(8, 8, 3)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x
        out = self.b(self.relu(self.a(x)))
        out += identity
        return self.relu(out)


@pytest.mark.parametrize("folded", [False, True], ids=["captured", "folded"])
def test_one_by_one_convolutions_can_be_left_to_inductor(fused_ops_on_cpu, folded):
    # folded (the pipeline optimize() runs): the weights are constants BatchNorm folding put
    # in, with no traced value to read their shape from
    conv = conv_bn if folded else lambda cin, cout, k: nn.Conv2d(cin, cout, k, padding=k // 2)
    model = nn.Sequential(conv(3, 4, 1), nn.ReLU(), conv(4, 4, 3), nn.ReLU()).eval()
    x = torch.randn(2, 3, 16, 16)
    fuse = FuseConvReLU(one_by_one=False)
    out = fuse.apply(_folded(model, x) if folded else capture(model, x).module())
    assert fuse.describe() == {"fused": 1, "with_add": 0}  # the 3x3 one
    assert _ops(out)["aten.conv2d.default"] == 1
    with torch.no_grad():
        torch.testing.assert_close(out(x), model(x), rtol=1e-5, atol=1e-5)


def test_in_place_relu_and_add_fuse_too(fused_ops_on_cpu):
    model, x = InPlaceBlock(), torch.randn(2, 8, 8, 8)
    folded = _folded(model, x)
    assert {"aten.relu_.default", "aten.add_.Tensor"} <= set(_ops(folded))
    fuse = FuseConvReLU()
    out = fuse.apply(folded)
    assert fuse.describe() == {"fused": 2, "with_add": 1}
    with torch.no_grad():
        torch.testing.assert_close(out(x), model(x), rtol=1e-5, atol=1e-5)


def test_an_in_place_add_into_the_shortcut_is_left_alone(fused_ops_on_cpu):
    """``z += conv(x)`` writes into ``z``: the fused call would not, so it does not match."""

    class IntoShortcut(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a = nn.Conv2d(4, 4, 3, padding=1)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            z = x * 2
            view = z[:, :2]  # a view taken before the add writes into z, read after it
            z += self.a(x)
            return torch.relu(z)[:, :2] + view

    _assert_left_alone(IntoShortcut().eval(), torch.randn(2, 4, 8, 8))


def test_a_conv_with_another_use_or_a_broadcast_add_is_left_alone(fused_ops_on_cpu):
    class Shapes(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a, self.b = nn.Conv2d(3, 4, 3, padding=1), nn.Conv2d(4, 4, 3, padding=1)
            self.shift = nn.Parameter(torch.randn(4, 1, 1))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            y = self.a(x)
            z = torch.relu(y) + y  # y has two users: relu(y) cannot swallow it
            return torch.relu(self.b(z) + self.shift)  # a broadcast add: not cuDNN's z

    _assert_left_alone(Shapes().eval(), torch.randn(2, 3, 8, 8))


def _assert_left_alone(model: nn.Module, x: torch.Tensor) -> None:
    fuse = FuseConvReLU()
    out = fuse.apply(capture(model, x).module())
    assert fuse.describe() == {"fused": 0, "with_add": 0}
    with torch.no_grad():
        torch.testing.assert_close(out(x), model(x))


def test_the_rewritten_graph_exports_with_channels_last_outputs():
    """Inductor and torch.export trace the fused calls through kiln's shape functions."""
    model, x = TinyResNet(), torch.randn(2, 3, 16, 16)
    fused = FuseConvReLU().apply(_folded(model, x)).to(memory_format=torch.channels_last)
    program = torch.export.export(fused, (x.contiguous(memory_format=torch.channels_last),))
    calls = [n for n in program.graph.nodes if "cudnn_convolution" in str(n.target)]
    assert len(calls) == 5
    for node in calls:
        value = node.meta["val"]
        assert value.is_contiguous(memory_format=torch.channels_last)
        assert value.shape[1] in (8, 16)


def test_an_aotinductor_package_of_the_fused_graph_builds_in_a_worker_and_runs(
    fused_ops_on_cpu, tmp_path
):
    """The package calls the fused operators through torch's dispatcher (no C shim), here
    the test's CPU kernels; the build worker traces them through kiln's shape functions."""
    model, x = TinyResNet(), torch.randn(2, 3, 16, 16)
    fused = FuseConvReLU().apply(_folded(model, x))
    options = inductor_options(torch.device("cpu"), 2, "none")
    paths = build_packages({2: fused, 1: fused}, {2: x, 1: x[:1]}, {2: options, 1: options},
                           tmp_path, jobs=2)  # fmt: skip
    for size, path in paths.items():
        run = load_package(path, torch.device("cpu"))
        with torch.no_grad():
            torch.testing.assert_close(run(x[:size]), model(x[:size]), rtol=1e-4, atol=1e-4)
