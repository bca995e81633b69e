"""The precision pass: half-precision body, fp32 classifier head, fp32 in and out."""

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
