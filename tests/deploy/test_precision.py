"""The precision pass: half-precision body, fp32 classifier head, fp32 in and out."""

import pytest
import torch
import torch.nn.functional as F

from kiln.deploy._capture import capture
from kiln.deploy._precision import Precision


def test_bf16_body_and_fp32_head_compute_what_they_say(mlp):
    x = torch.randn(5, 6)
    precision = Precision(torch.bfloat16)
    module = precision.apply(capture(mlp, x).module())
    bf = torch.bfloat16
    hidden = F.relu(F.linear(x.to(bf), mlp.fc1.weight.to(bf), mlp.fc1.bias.to(bf)))
    expected = F.linear(hidden.float(), mlp.fc2.weight, mlp.fc2.bias)  # fp32 weights, unrounded
    out = module(x)
    assert out.dtype == torch.float32
    torch.testing.assert_close(out, expected.detach(), rtol=1e-6, atol=1e-6)
    assert precision.describe() == {"fp32_head": ["model.fc2"]}
    assert mlp.fc1.weight.dtype == torch.float32  # the captured original is untouched


def test_without_the_head_option_everything_is_rounded(mlp):
    x = torch.randn(5, 6)
    module = Precision(torch.bfloat16, fp32_head=False).apply(capture(mlp, x).module())
    bf = torch.bfloat16
    hidden = F.relu(F.linear(x.to(bf), mlp.fc1.weight.to(bf), mlp.fc1.bias.to(bf)))
    expected = F.linear(hidden, mlp.fc2.weight.to(bf), mlp.fc2.bias.to(bf)).float()
    torch.testing.assert_close(module(x), expected.detach(), rtol=0, atol=0)


def test_fp8_pass_quantizes_the_body_linears_and_leaves_the_fp32_head(monkeypatch):
    """torchao refuses fp8 below compute capability 8.9; its CPU kernels run the same math."""
    quant_api = pytest.importorskip("torchao.quantization.quant_api")
    if not hasattr(quant_api, "_check_hardware_support"):
        pytest.skip("this torchao checks the hardware elsewhere")
    monkeypatch.setattr(quant_api, "_check_hardware_support", lambda *args, **kwargs: None)
    from kiln.deploy._fp8 import Float8Linear

    model = torch.nn.Sequential(torch.nn.Linear(64, 128), torch.nn.ReLU(), torch.nn.Linear(128, 32))
    x = torch.randn(16, 64)
    module = Precision(torch.bfloat16).apply(capture(model.eval(), x).module())
    fp8 = Float8Linear()
    out = fp8.apply(module)(x)
    assert fp8.describe() == {"quantized": ["module._kiln_linear_0"]}  # the head stays fp32
    reference = model(x).detach()
    assert 0 < float((out - reference).abs().max() / reference.abs().max()) <= 0.1
