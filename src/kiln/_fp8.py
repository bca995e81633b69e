"""Where float8 can run: shared by training (``precision="fp8"``) and deployment."""

from __future__ import annotations

import torch

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
