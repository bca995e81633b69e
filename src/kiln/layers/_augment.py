"""Augmentation layers: random per-sample changes in training, the identity in inference.

As Keras's preprocessing layers, they sit at the front of a model, so augmentation runs on the
device with the batch (no CPU worker, no copy) and disappears in ``eval()`` and ``predict``.
Randomness comes from torch's global generator, which the resume checkpoint saves.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from kiln.layers._base import Layer
from kiln.layers._validate import choice, expect_rank, int_tuple, positive_int


class RandomTranslation(Layer):
    """Shift each image by a random whole number of pixels, filling with zeros.

    ``height_factor`` and ``width_factor`` are fractions of the image size, as in Keras
    (``0.1`` on a 28-pixel image: up to 2 pixels each way; ``width_factor`` defaults to
    ``height_factor``). Unlike Keras there is no interpolation: shifts are whole pixels, which
    keeps the layer a single gather on the device. Inputs are ``(batch, channels, H, W)``.
    """

    def __init__(
        self, height_factor: float, width_factor: float | None = None, name: str | None = None
    ) -> None:
        super().__init__(name=name)
        width_factor = height_factor if width_factor is None else width_factor
        for arg, value in (("height_factor", height_factor), ("width_factor", width_factor)):
            if not 0.0 <= value < 1.0:
                raise ValueError(
                    f"RandomTranslation's {arg} must be in [0, 1). Received: {arg}={value}"
                )
        self.height_factor, self.width_factor = float(height_factor), float(width_factor)

    def forward(self, x: Tensor) -> Tensor:
        expect_rank(self, x.shape, (4,), "(batch, channels, height, width)")
        if not self.training:
            return x
        n, _, h, w = x.shape
        dy_max, dx_max = int(self.height_factor * h), int(self.width_factor * w)
        if dy_max == 0 and dx_max == 0:
            return x
        dy = torch.randint(-dy_max, dy_max + 1, (n, 1), device=x.device)
        dx = torch.randint(-dx_max, dx_max + 1, (n, 1), device=x.device)
        padded = F.pad(x, (dx_max, dx_max, dy_max, dy_max))
        rows = torch.arange(h, device=x.device) + dy_max - dy  # (n, h): source row per output row
        cols = torch.arange(w, device=x.device) + dx_max - dx  # (n, w)
        batch = torch.arange(n, device=x.device)[:, None, None, None]
        channels = torch.arange(x.shape[1], device=x.device)[None, :, None, None]
        return padded[batch, channels, rows[:, None, :, None], cols[:, None, None, :]]


class RandomFlip(Layer):
    """Flip each image left-right and/or upside down with probability 1/2, per sample.

    ``mode`` is Keras's: "horizontal" (mirror the width axis), "vertical" (the height axis) or
    "horizontal_and_vertical" (each axis flipped independently). Inputs are
    ``(batch, channels, H, W)``; one ``where`` per flipped axis, no host sync.
    """

    def __init__(self, mode: str = "horizontal_and_vertical", name: str | None = None) -> None:
        super().__init__(name=name)
        modes = ("horizontal", "vertical", "horizontal_and_vertical")
        self.mode = choice("RandomFlip", "mode", mode, modes)

    def forward(self, x: Tensor) -> Tensor:
        expect_rank(self, x.shape, (4,), "(batch, channels, height, width)")
        if not self.training:
            return x
        dims = {"horizontal": (-1,), "vertical": (-2,)}.get(self.mode, (-1, -2))
        for dim in dims:
            flip = torch.rand(x.shape[0], 1, 1, 1, device=x.device) < 0.5
            x = torch.where(flip, x.flip(dim), x)
        return x


class RandomCrop(Layer):
    """Crop each image to ``(height, width)`` at a random place in training, the center in
    inference (as Keras).

    ``padding`` (an int, or (rows, columns)) adds zeros on every side before the training crop,
    as torchvision's ``RandomCrop(32, padding=4)`` for CIFAR; inference crops the center of the
    unpadded image, so with ``height, width`` equal to the image size it is the identity.
    Inputs are ``(batch, channels, H, W)``; training is one gather on the device.
    """

    def __init__(
        self, height: int, width: int, padding: int | tuple[int, int] = 0, name: str | None = None
    ) -> None:
        super().__init__(name=name)
        self.height = positive_int("RandomCrop", "height", height)
        self.width = positive_int("RandomCrop", "width", width)
        self.padding = int_tuple("RandomCrop", "padding", padding, 2, minimum=0)

    def forward(self, x: Tensor) -> Tensor:
        expect_rank(self, x.shape, (4,), "(batch, channels, height, width)")
        n, c, h, w = x.shape
        pad_h, pad_w = (0, 0) if not self.training else self.padding
        if h + 2 * pad_h < self.height or w + 2 * pad_w < self.width:
            raise ValueError(
                f"RandomCrop expects images (plus padding={list(self.padding)} in training) at "
                f"least {self.height}x{self.width}, received an input of shape {tuple(x.shape)}."
            )
        if not self.training:
            y0, x0 = (h - self.height) // 2, (w - self.width) // 2
            return x[:, :, y0 : y0 + self.height, x0 : x0 + self.width]
        padded = F.pad(x, (pad_w, pad_w, pad_h, pad_h))
        top = torch.randint(0, h + 2 * pad_h - self.height + 1, (n, 1), device=x.device)
        left = torch.randint(0, w + 2 * pad_w - self.width + 1, (n, 1), device=x.device)
        rows = torch.arange(self.height, device=x.device) + top  # (n, height)
        cols = torch.arange(self.width, device=x.device) + left  # (n, width)
        batch = torch.arange(n, device=x.device)[:, None, None, None]
        channels = torch.arange(c, device=x.device)[None, :, None, None]
        return padded[batch, channels, rows[:, None, :, None], cols[:, None, None, :]]
