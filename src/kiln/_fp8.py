"""Where float8 can run: shared by training (``precision="fp8"``) and deployment."""

from __future__ import annotations

import sys
from typing import cast

import torch
from torch import nn

MIN_CAPABILITY = (8, 9)  # Ada, Hopper, Blackwell: the GPUs with float8 tensor cores


def fp8_unsupported(device: torch.device) -> str | None:
    """Why fp8 cannot run on ``device``, or None when it can."""
    if device.type != "cuda":
        return f"fp8 needs an NVIDIA GPU (compute capability >= 8.9); the device is {device}"
    capability = torch.cuda.get_device_capability(device)
    if capability < MIN_CAPABILITY:
        name = torch.cuda.get_device_name(device)
        return f"fp8 needs compute capability >= 8.9; {name} has {capability[0]}.{capability[1]}"
    return None


def strip_float8(model: nn.Module) -> nn.Module:
    """Take the float8 products of ``precision="fp8"`` training out of ``model``, in place:
    each ``Dense`` back on ``F.linear``, each torchao ``Float8Linear`` replaced by an
    ``nn.Linear`` holding the same parameters. For copies that ``torch.export`` traces
    (deployment chooses its own precision); returns ``model``."""
    from kiln.layers import Dense

    float8 = _float8_linear_type()
    for name, module in list(model.named_modules()):
        if isinstance(module, Dense):
            module.use_linear(None)
        elif float8 is not None and isinstance(module, float8) and name:
            parent, _, child = name.rpartition(".")
            plain = linear_of(module.weight, module.bias)
            model.get_submodule(parent).register_module(child, plain)
    return model


def linear_of(weight: torch.Tensor, bias: torch.Tensor | None) -> nn.Linear:
    """An ``nn.Linear`` holding these very parameters (no copy)."""
    out_features, in_features = weight.shape
    linear = nn.Linear(in_features, out_features, bias=False, device="meta")
    linear.register_parameter("weight", cast(nn.Parameter, weight))
    linear.register_parameter("bias", cast("nn.Parameter | None", bias))
    return linear


def _float8_linear_type() -> type[nn.Linear] | None:
    """torchao's Float8Linear when torchao is loaded (a model holding one has loaded it)."""
    if "torchao.float8.float8_linear" not in sys.modules:
        return None
    return sys.modules["torchao.float8.float8_linear"].Float8Linear  # type: ignore[no-any-return]
