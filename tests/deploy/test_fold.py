import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_weights

from kiln.deploy._capture import capture
from kiln.deploy._fold import FoldBatchNorm, folded


def _nodes(module: nn.Module) -> list[str]:
    return [str(n.target) for n in module.graph.nodes if n.op == "call_function"]


def test_folded_weights_equal_torchs_own_fusion():
    conv, bn = nn.Conv2d(3, 5, 3, bias=True), nn.BatchNorm2d(5)
    bn.running_mean.normal_(), bn.running_var.uniform_(0.5, 2)
    with torch.no_grad():
        bn.weight.normal_(), bn.bias.normal_()
    expected_w, expected_b = fuse_conv_bn_weights(
        conv.weight, conv.bias, bn.running_mean, bn.running_var, bn.eps, bn.weight, bn.bias
    )
    w, b = folded(conv.weight.detach(), conv.bias.detach(), bn.weight.detach(),
                  bn.bias.detach(), bn.running_mean, bn.running_var, bn.eps)  # fmt: skip
    torch.testing.assert_close(w, expected_w.detach(), rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(b, expected_b.detach(), rtol=1e-6, atol=1e-6)


def test_folding_a_captured_conv_net_matches_eager_in_eval_mode(conv_net, images):
    module = capture(conv_net, images).module()
    fold = FoldBatchNorm()
    out = fold.apply(module)
    assert fold.describe() == {"folded": 2}
    assert not any("batch_norm" in t for t in _nodes(out))
    assert any("batch_norm" in t for t in _nodes(module))  # the input graph is left alone
    x = torch.randn(5, 3, 8, 8)
    torch.testing.assert_close(out(x), conv_net(x), rtol=1e-5, atol=1e-5)


def test_a_conv_whose_output_is_also_used_elsewhere_is_not_folded():
    class Branch(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv, self.bn = nn.Conv2d(2, 2, 1), nn.BatchNorm2d(2)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            y = self.conv(x)
            return self.bn(y) + y

    model = Branch().eval()
    model.bn.running_mean.fill_(3.0)
    fold = FoldBatchNorm()
    out = fold.apply(capture(model, torch.randn(2, 2, 4, 4)).module())
    x = torch.randn(3, 2, 4, 4)
    assert fold.folded == 0
    torch.testing.assert_close(out(x), model(x))
