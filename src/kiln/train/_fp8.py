"""``precision="fp8"``: float8 matrix multiplies for linear layers, bf16 autocast for the rest.

torchao's float8 training (``Float8Linear``, dynamic per-tensor scaling) computes a linear
layer's forward and both backward GEMMs in float8 on GPUs with float8 tensor cores (compute
capability 8.9 or newer), with the weights, their gradients and the optimizer in full
precision. It pays for large linear layers (transformers, wide MLPs); convolutions stay in
bf16. Layers whose in or out features are not multiples of 16 (what float8 GEMMs need) stay
bf16 too.

``nn.Linear`` modules are swapped for ``Float8Linear``; kiln's ``Dense`` keeps its module and
routes its product through a ``Float8Linear`` that shares its parameters, so state dicts,
checkpoints and saved models keep their keys either way.
"""

from __future__ import annotations

import functools
from typing import Any

import torch
from torch import nn

from kiln._extras import require
from kiln._fp8 import fp8_unsupported, linear_of
from kiln.layers import Dense


def convert_linears(model: nn.Module, device: torch.device) -> list[str]:
    """Give ``model``'s eligible linear layers float8 products, in place; returns their names.

    On anything but a float8-capable GPU this raises, unless the device is the CPU in a test
    that has patched ``fp8_unsupported``: then torchao's emulation (float8 rounding in fp32)
    runs the same code."""
    if reason := fp8_unsupported(device):
        raise ValueError(
            f"precision='fp8' cannot train here: {reason}. Use precision='bf16' (the default on "
            "GPUs that support it) or 'fp16'."
        )
    require("torchao", "fp8")
    from torchao.float8 import Float8LinearConfig
    from torchao.float8.float8_linear import Float8Linear

    config = Float8LinearConfig(emulate=device.type != "cuda")
    float8_linear = _autocast_safe(Float8Linear)
    converted = []
    for name, module in list(model.named_modules()):
        if isinstance(module, Float8Linear):  # converted by an earlier compile()
            converted.append(name)
            continue
        is_linear = type(module) is nn.Linear and name != ""  # a bare nn.Linear: no parent
        if not (is_linear or isinstance(module, Dense)) or not _eligible(module.weight):
            continue
        float8 = float8_linear.from_float(linear_of(module.weight, module.bias), config)
        if is_linear:
            parent, _, child = name.rpartition(".")
            model.get_submodule(parent).register_module(child, float8)
        else:
            module.use_linear(float8.forward)
        converted.append(name)
    if not converted:
        raise ValueError(
            "precision='fp8' runs linear layers (nn.Linear or kiln's Dense) whose in and out "
            "features are multiples of 16 in float8, and this model has none: use "
            "precision='bf16'."
        )
    return converted


def _eligible(weight: torch.Tensor) -> bool:
    out_features, in_features = weight.shape
    return in_features % 16 == 0 and out_features % 16 == 0


@functools.cache
def _autocast_safe(float8_linear: type[nn.Module]) -> Any:
    """torchao's ``Float8Linear`` that runs under autocast in inference mode too.

    Under autocast, torch casts a product's operands to the autocast dtype; in inference mode
    that cast reaches torchao's float8 weight, which refuses it ("attempting to run
    aten.to.dtype", torchao 0.18: ``evaluate`` after fp8 training failed on the H100,
    2026-11-28). This casts the input to the autocast dtype itself, as torchao does, and runs
    the float8 product with autocast off: the same result, in or out of inference mode."""

    class AutocastSafeFloat8Linear(float8_linear):  # type: ignore[valid-type,misc]
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            device = x.device.type
            if not torch.is_autocast_enabled(device):
                return super().forward(x)  # type: ignore[no-any-return]
            dtype = torch.get_autocast_dtype(device)
            with torch.autocast(device, enabled=False):
                return super().forward(x.to(dtype))  # type: ignore[no-any-return]

    return AutocastSafeFloat8Linear
