"""``SpaceToDepthStem``: a strided stem on few channels as a stride-1 convolution on more, the
same products (fp32 on the CPU: equal to rounding), for the batch-1 graph only."""

import pytest
import torch
from torch import fx, nn

from kiln.deploy._capture import capture
from kiln.deploy._passes import ChannelsLast
from kiln.deploy._space_to_depth import SpaceToDepthStem, space_to_depth_weight

aten = torch.ops.aten


def _ops(module: nn.Module) -> list[object]:
    return [n.target for m in module.modules() if isinstance(m, fx.GraphModule)
            for n in m.graph.nodes if n.op == "call_function"]  # fmt: skip


# (height, width, kernel, padding, channels, channels_last): ResNet's stem, odd and even sizes
# and kernels (an even kernel on an odd padded size leaves a row to slice off), 1-3 channels
@pytest.mark.parametrize(("height", "width", "kernel", "padding", "channels", "last"), [
    (224, 224, 7, 3, 3, False), (33, 30, 7, 3, 3, True), (31, 31, 4, 1, 3, False),
    (32, 29, 3, 1, 1, True), (16, 17, 5, 0, 4, False),
])  # fmt: skip
def test_the_rewritten_stem_matches_the_strided_convolution(height, width, kernel, padding,
                                                            channels, last):  # fmt: skip
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(channels, 8, kernel, 2, padding), nn.ReLU()).eval()
    x = torch.randn(2, channels, height, width)
    module = capture(model, x).module()
    module = ChannelsLast().apply(module) if last else module
    stem = SpaceToDepthStem()
    rewritten = stem.apply(module)
    assert stem.describe() == {"rewritten": 1}
    convs = [op for op in _ops(rewritten) if op is aten.conv2d.default]
    assert len(convs) == 1  # one convolution, now with stride 1
    with torch.no_grad():
        out, expected = rewritten(x), model(x)
    assert out.shape == expected.shape
    torch.testing.assert_close(out, expected, rtol=0, atol=2e-5)


def test_the_weight_holds_each_cells_taps_as_channels():
    w = torch.arange(2 * 1 * 3 * 3, dtype=torch.float32).reshape(2, 1, 3, 3)
    stacked = space_to_depth_weight(w, multiple=8)
    # 4 channels per input channel (the 2x2 cell), padded to 8; 3x3 padded to 4x4 -> 2x2
    assert stacked.shape == (2, 8, 2, 2)
    for r in range(2):
        for s in range(2):
            for p in range(2):
                for q in range(2):
                    a, b = 2 * p + r, 2 * q + s
                    tap = w[:, 0, a, b] if a < 3 and b < 3 else torch.zeros(2)
                    torch.testing.assert_close(stacked[:, 2 * r + s, p, q], tap)
    assert not stacked[:, 4:].any()  # the padding channels


def test_only_strided_convolutions_on_few_channels_are_rewritten_and_only_at_batch_1():
    model = nn.Sequential(nn.Conv2d(3, 8, 3, 1, 1), nn.Conv2d(8, 8, 3, 2, 1),
                          nn.Conv2d(8, 4, 1, 2)).eval()  # fmt: skip
    module = capture(model, torch.randn(2, 3, 16, 16)).module()
    stem = SpaceToDepthStem()
    stem.apply(module)
    assert stem.rewritten == 0  # stride 1; 8 channels; a 1x1 kernel
    assert SpaceToDepthStem.batch_sizes == (1,)


def test_cudnns_fused_convolution_relu_is_rewritten_as_a_fused_call():
    """After ``FuseConvReLU`` the stem is ``aten.cudnn_convolution_relu`` (here with a CPU
    stand-in for cuDNN's kernel, registered for this test only)."""
    from kiln.deploy._fuse_conv import FuseConvReLU

    def conv_relu(x, w, b, stride, padding, dilation, groups):
        return torch.relu(nn.functional.conv2d(x, w, b, stride, padding, dilation, groups))

    library = torch.library.Library("aten", "IMPL")
    library.impl("cudnn_convolution_relu", conv_relu, "CPU")
    try:
        torch.manual_seed(0)
        model = nn.Sequential(nn.Conv2d(3, 8, 7, 2, 3), nn.ReLU()).eval()
        x = torch.randn(2, 3, 30, 30)
        fused = FuseConvReLU().apply(capture(model, x).module())
        assert aten.cudnn_convolution_relu.default in _ops(fused)
        stem = SpaceToDepthStem()
        rewritten = stem.apply(fused)
        fused_op = aten.cudnn_convolution_relu.default
        [call] = [n for m in rewritten.modules() if isinstance(m, fx.GraphModule)
                  for n in m.graph.nodes if n.target is fused_op]  # fmt: skip
        assert list(call.args[3]) == [1, 1] and stem.rewritten == 1
        with torch.no_grad():
            torch.testing.assert_close(rewritten(x), model(x), rtol=0, atol=2e-5)
    finally:
        library._destroy()
