"""Images in, normalized tensors inside: the engine takes decoded uint8 NHWC images.

``image={"mean": [...], "std": [...]}`` (per channel, on the 0..1 scale, as torchvision
writes them): the engine computes ``(x / 255 - mean) / std`` and the NHWC -> NCHW permute in
its own compiled graph, so a server hands it the decoded bytes and no preprocessing runs in
Python. Missing ``mean`` means 0, missing ``std`` means 1.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from kiln.deploy._passes import Pass


class Normalize(nn.Module):
    """uint8 (N, H, W, C) -> float32 (N, C, H, W), normalized per channel."""

    mean: torch.Tensor
    std: torch.Tensor

    def __init__(self, mean: Sequence[float], std: Sequence[float]) -> None:
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).reshape(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).reshape(1, -1, 1, 1))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = images.permute(0, 3, 1, 2).float()
        return (x / 255.0 - self.mean) / self.std


class ImageModel(nn.Module):
    def __init__(self, normalize: Normalize, module: nn.Module) -> None:
        super().__init__()
        self.normalize, self.module = normalize, module

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.module(self.normalize(images))


class ImageInput(Pass):
    """Prepend uint8 NHWC decoding and normalization to a model that takes float NCHW."""

    name = "image_input"
    tolerance = 1e-5

    def __init__(self, image: dict[str, Any], channels: int) -> None:
        self.image = parse_image(image, channels)
        self.normalize = Normalize(self.image["mean"], self.image["std"])

    def apply(self, module: nn.Module) -> nn.Module:
        return ImageModel(self.normalize, module)

    def images_like(self, x: torch.Tensor, seed: int = 0) -> torch.Tensor:
        """Random uint8 NHWC images for a model input ``x`` of shape (N, C, H, W)."""
        n, c, h, w = x.shape
        generator = torch.Generator().manual_seed(seed)
        images = torch.randint(0, 256, (n, h, w, c), generator=generator, dtype=torch.uint8)
        return images.to(x.device)


def parse_image(image: dict[str, Any], channels: int) -> dict[str, list[float]]:
    """``image=`` with ``mean`` and ``std`` as lists of ``channels`` floats; errors echo it."""
    unknown = set(image) - {"mean", "std"}
    if unknown:
        raise ValueError(
            f"image= takes the keys 'mean' and 'std' (per channel, on the 0..1 scale). "
            f"Received: unknown keys {sorted(unknown)} in {image!r}."
        )
    out = {}
    for key, default in (("mean", 0.0), ("std", 1.0)):
        value = image.get(key, [default] * channels)
        values = [float(v) for v in (value if isinstance(value, Sequence) else [value])]
        if len(values) == 1:
            values *= channels
        if len(values) != channels or (key == "std" and min(values) <= 0):
            raise ValueError(
                f"image[{key!r}] must hold {channels} value(s), one per channel of the model's "
                f"input{', all > 0' if key == 'std' else ''}. Received: {value!r}."
            )
        out[key] = values
    return out
